"""Studio: the repository's langgraph.json served by ``langgraph dev`` (in-memory runtime)
on a free local port, driven with the langgraph-sdk client as Studio drives it.

The server runs with human gates on (``AGENTX_AUTONOMOUS=false``) so a run pauses at the
proposal-admission and launch-past-canary interrupts and is resumed through the API.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NamedTuple

import httpx
import pytest
from langgraph_sdk import get_client

from agentx.graph.tracelog import read_trace
from agentx.models import ExperimentStatus, TraceEvent

REPO = Path(__file__).resolve().parents[1]
GRAPHS = {
    "agentx_loop",
    "agentx_brainstorm",
    "agentx_develop",
    "agentx_experiment",
    "agentx_evaluate",
    "agentx_evolve",
}


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _config_for(directory: Path) -> Path:
    """The repository's langgraph.json with its paths made absolute (they resolve
    against the working directory, and the server runs in a temp directory so its
    ``.langgraph_api`` state never lands in the checkout)."""
    config = json.loads((REPO / "langgraph.json").read_text())
    graphs = {}
    for name, spec in config["graphs"].items():
        path, _, variable = spec.partition(":")
        graphs[name] = f"{(REPO / path).resolve()}:{variable}"
    config["graphs"] = graphs
    config["dependencies"] = [str(REPO)]
    target = directory / "langgraph.json"
    target.write_text(json.dumps(config))
    return target


class Studio(NamedTuple):
    """The dev server's address and the AgentX workspace it runs in."""

    url: str
    workspace: Path

    def trace(self, thread_id: str) -> list[TraceEvent]:
        """A thread's trace log (its run id is the thread id)."""
        return read_trace(self.workspace, thread_id)


@pytest.fixture(scope="module")
def studio(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Studio]:
    langgraph = shutil.which("langgraph", path=str(Path(sys.executable).parent))
    assert langgraph, "langgraph-cli[inmem] is not installed in this environment"
    directory = tmp_path_factory.mktemp("studio")
    config = _config_for(directory)
    port = _free_port()
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("LANGSMITH_API")},
        "LANGGRAPH_CLI_NO_ANALYTICS": "1",
        "LANGGRAPH_NO_VERSION_CHECK": "true",
        "LANGSMITH_TRACING": "false",
        "AGENTX_WORLD": "tiny",
        "AGENTX_ITERATIONS": "1",
        "AGENTX_WORKSPACE": str(directory / "workspace"),
        "AGENTX_AUTONOMOUS": "false",
    }
    log = directory / "server.log"
    with log.open("w") as sink:
        process = subprocess.Popen(
            [langgraph, "dev", "--no-browser", "--no-reload", "--host", "127.0.0.1",
             "--port", str(port), "--config", str(config)],
            cwd=directory, env=env, stdout=sink, stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 180
    while True:
        try:
            if httpx.get(f"{url}/ok", timeout=2).status_code == 200:
                break
        except httpx.HTTPError:
            pass
        if process.poll() is not None or time.monotonic() > deadline:
            os.killpg(process.pid, signal.SIGKILL)
            pytest.fail(f"langgraph dev did not come up:\n{log.read_text()[-4000:]}")
        time.sleep(0.5)
    yield Studio(url, directory / "workspace")
    os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()


def _interrupts(state: dict[str, Any]) -> list[dict[str, Any]]:
    return [i["value"] for task in state.get("tasks", []) for i in task.get("interrupts", [])]


def test_every_entry_point_is_served_with_readable_nodes(studio: Studio) -> None:
    async def drive() -> tuple[set[str], dict[str, set[str]]]:
        client = get_client(url=studio.url)
        assistants = await client.assistants.search(limit=20)
        by_graph = {a["graph_id"]: a for a in assistants}
        drawings = {}
        for name in ("agentx_loop", "agentx_develop", "agentx_experiment"):
            drawing = await client.assistants.get_graph(by_graph[name]["assistant_id"])
            drawings[name] = {node["id"] for node in drawing["nodes"]}
        return set(by_graph), drawings

    graphs, drawings = asyncio.run(drive())
    assert GRAPHS <= graphs
    # Each agent's Studio graph is its own subgraph, the one the loop runs.
    assert drawings["agentx_develop"] >= {"develop", "verify", "repair", "abandon"}
    assert not drawings["agentx_develop"] & {"intake", "brainstorm", "launch", "learn"}
    assert drawings["agentx_experiment"] >= {"developing_agent", "evaluation_agent", "conclude"}
    assert drawings["agentx_loop"] >= {"brainstorm_agent", "experiment", "learn"}


def test_brainstorm_pauses_for_admission_and_resumes(studio: Studio) -> None:
    async def drive() -> tuple[dict, dict]:
        client = get_client(url=studio.url)
        thread = await client.threads.create()
        await client.runs.wait(
            thread["thread_id"], "agentx_brainstorm", input={"goal_text": "raise watch time"}
        )
        paused = await client.threads.get_state(thread["thread_id"])
        await client.runs.wait(
            thread["thread_id"], "agentx_brainstorm", command={"resume": {"action": "approve"}}
        )
        return thread["thread_id"], paused, await client.threads.get_state(thread["thread_id"])

    thread_id, paused, done = asyncio.run(drive())
    assert paused["next"] == ["admission_gate"]
    (gate,) = _interrupts(paused)
    assert gate["gate"] == "proposal_admission" and "approve" in gate["choices"]
    assert done["next"] == []
    assert done["values"]["current"]["technique"] == gate["proposal"]["technique"]
    assert "trace" not in done["values"]  # the trace is a log, not checkpointed state
    assert any("approved by reviewer" in e.message for e in studio.trace(thread_id))


def test_loop_runs_an_experiment_through_the_gates(studio: Studio) -> None:
    async def drive() -> tuple[dict, list[dict[str, Any]]]:
        client = get_client(url=studio.url)
        thread = await client.threads.create()
        thread_id = thread["thread_id"]
        await client.runs.wait(thread_id, "agentx_loop", input={"iterations": 1})
        answered: list[dict[str, Any]] = []
        state = await client.threads.get_state(thread_id)
        while _interrupts(state) and len(answered) < 5:
            answered.extend(_interrupts(state))
            answer = {"action": "approve", "reviewer": "studio"}
            if answered[-1].get("kind") == "moderate_guardrail_review":
                answer = {"approve": True, "reviewer": "studio"}
            await client.runs.wait(thread_id, "agentx_loop", command={"resume": answer})
            state = await client.threads.get_state(thread_id)
        return state, answered

    state, answered = asyncio.run(drive())
    assert state["next"] == []
    gates = [value.get("gate") for value in answered]
    assert gates[0] == "proposal_admission"
    (experiment,) = state["values"]["experiments"]
    assert experiment["status"] in {status.value for status in ExperimentStatus}
    stages = (experiment["rollout"] or {}).get("stages") or []
    launches = [value for value in answered if value.get("gate") == "launch_past_canary"]
    # The launch gate asks before the ramp exactly when the canary would go on (an
    # experiment abandoned at verification never reaches a canary).
    assert len(launches) == bool(stages and stages[0]["decision"] == "continue")
    for launch in launches:
        assert (launch["stage"], launch["next_stage"]) == ("canary", "ramp")
        assert launch["choices"] == ["approve", "halt"]
        assert [s["stage"] for s in stages][:2] == ["canary", "ramp"]
    assert state["values"]["funnel"]["admitted"] >= 1


def test_harness_evolution_runs_one_step_on_the_recorded_runs(studio: Studio) -> None:
    async def drive() -> tuple[dict, dict]:
        client = get_client(url=studio.url)
        assistants = {a["graph_id"]: a for a in await client.assistants.search(limit=20)}
        drawing = await client.assistants.get_graph(assistants["agentx_evolve"]["assistant_id"])
        thread = await client.threads.create()
        await client.runs.wait(thread["thread_id"], "agentx_evolve", input={"agent": "brainstorm"})
        return drawing, await client.threads.get_state(thread["thread_id"])

    drawing, state = asyncio.run(drive())
    nodes = {node["id"] for node in drawing["nodes"]}
    assert {"diagnose", "refine", "safety_check", "replay", "decide"} <= nodes
    step = state["values"]["step"]
    assert step["agent"] == "brainstorm"
    # The earlier tests recorded at most a couple of experiments: too few to judge an edit.
    assert step["outcome"] in {"no_gradient", "not_enough_tasks", "kept", "rolled_back"}
    assert step["reason"]


def test_gates_take_human_responses_and_a_misunderstood_answer_decides_nothing(
    studio: Studio,
) -> None:
    """The SDK sends the same HumanResponse as the CLI and LangServe (issue 15, point 4)."""

    async def drive() -> tuple[str, dict, dict, dict, dict]:
        client = get_client(url=studio.url)
        thread_id = (await client.threads.create())["thread_id"]
        await client.runs.wait(thread_id, "agentx_loop", input={"iterations": 1})
        first = await client.threads.get_state(thread_id)
        await client.runs.wait(thread_id, "agentx_loop", command={"resume": {"type": "maybe"}})
        again = await client.threads.get_state(thread_id)
        reject = {"type": "response", "args": "not this quarter"}
        await client.runs.wait(thread_id, "agentx_loop", command={"resume": reject})
        second = await client.threads.get_state(thread_id)
        state = second
        for _ in range(6):
            if not _interrupts(state):
                break
            accept = {"type": "accept"}
            await client.runs.wait(thread_id, "agentx_loop", command={"resume": accept})
            state = await client.threads.get_state(thread_id)
        return thread_id, first, again, second, state

    thread_id, first, again, second, done = asyncio.run(drive())
    (gate,) = _interrupts(first)
    assert gate["action_request"]["action"] == "proposal_admission"  # HumanInterrupt
    assert gate["config"] == {"allow_accept": True, "allow_edit": True, "allow_respond": True,
                              "allow_ignore": True}  # fmt: skip
    assert gate["description"] and gate["action_request"]["args"]["proposal"]
    (still,) = _interrupts(again)  # not a silent veto: the same gate asks again
    assert again["next"] == ["brainstorm_agent"] and "not understood" in still["error"]
    assert still["action_request"]["args"]["proposal"] == gate["action_request"]["args"]["proposal"]
    (other,) = _interrupts(second)
    assert other["action_request"]["args"]["proposal"] != gate["action_request"]["args"]["proposal"]
    assert any("not this quarter" in e.message for e in studio.trace(thread_id))
    assert done["next"] == [] and len(done["values"]["experiments"]) == 1


def test_one_loop_graph_runs_each_thread_with_its_own_world_and_seed(studio: Studio) -> None:
    """Per-run context (issue 16): world, seed, budget and autonomy come with the run, not
    with the compiled graph; the server's one ``agentx_loop`` serves both runs."""
    tiny = json.loads((REPO / "agentx" / "sandbox" / "worlds" / "tiny.json").read_text())
    other = studio.workspace.parent / "tiny_b.json"
    other.write_text(json.dumps({**tiny, "name": "tiny_b", "n_users": 1500}))
    contexts = [
        {"world": "tiny", "seed": 5, "iterations": 1, "autonomous": True},
        {"world": str(other), "seed": 9, "iterations": 1, "autonomous": True},
    ]

    async def drive() -> list[dict[str, Any]]:
        client = get_client(url=studio.url)
        states = []
        for context in contexts:
            thread_id = (await client.threads.create())["thread_id"]
            await client.runs.wait(thread_id, "agentx_loop", input={}, context=context)
            states.append(await client.threads.get_state(thread_id))
        return states

    states = asyncio.run(drive())
    for context, state in zip(contexts, states, strict=True):
        assert state["next"] == []  # autonomous from its context: no gate paused it
        recorded = state["values"]["context"]
        assert (recorded["world"], recorded["seed"]) == (context["world"], context["seed"])
        assert len(state["values"]["experiments"]) == 1
    # each world and seed got a sandbox of its own, built when its run first needed it
    assert (studio.workspace / "sandboxes" / "tiny-seed5" / "repo").is_dir()
    assert (studio.workspace / "sandboxes" / "tiny_b-seed9" / "repo").is_dir()


def test_the_server_holds_its_workspace_so_a_cli_run_there_is_refused(studio: Studio) -> None:
    """Studio runs write the workspace's sandbox, memory and runs.json with no lock of their
    own: the server holds the workspace lock from its graphs' first build until it stops,
    so `agentx run` there is refused in one line naming it, and nothing of it is written."""
    env = {k: v for k, v in os.environ.items() if not k.upper().startswith("AGENTX_")}
    runs = studio.workspace / "runs.json"
    before = runs.read_text() if runs.exists() else None
    refused = subprocess.run(
        [sys.executable, "-m", "agentx.cli.app", "run", "--world", "tiny", "--iterations", "1",
         "--workspace", str(studio.workspace)],
        env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    lines = [line for line in (refused.stdout + refused.stderr).splitlines() if line.strip()]
    assert refused.returncode == 2 and len(lines) == 1, lines
    assert "in use by pid" in lines[0] and "AgentX Studio graphs" in lines[0]
    assert (runs.read_text() if runs.exists() else None) == before
