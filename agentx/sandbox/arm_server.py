"""Child-process entry point: one arm of an experiment, serving day by day in a closed loop.

Run confined (see :mod:`agentx.sandbox.arms`) as
``python -m agentx.sandbox.arm_server REPO DATA --seed S [--load-model F | --save-model D]
[--checkpoint-dir D]``.
It imports the repository's own ``recsys`` package, so a change under test runs its real
code, trains on the historical logs (or loads the model an earlier arm of the same snapshot
trained and pickled: :mod:`agentx.sandbox.model_cache`), then answers the simulator over
stdin/stdout (:mod:`agentx.sandbox.arm_protocol`):

* ``serve`` (day, users) -> the slates and candidate counts ``Model.serve`` returns;
* ``diagnose`` (day) -> the model's numeric diagnostics (:mod:`agentx.sandbox.model_checks`);
* ``update`` (one day of this arm's own impressions) -> ``Model.update``: the arm retrains on
  the feedback its own slates produced, as a production recommender does;
* ``checkpoint`` -> pickles the model as it is now into the ``--checkpoint-dir`` (a control
  after the pre-period: later rollouts of the same baseline start from it,
  :mod:`agentx.sandbox.pre_period`);
* ``quit``.

Replies carry the wall and CPU seconds the arm spent (CPU time shows what the arm's code
costs whatever else the machine runs; the parent only reports it).

The protocol uses a private copy of the original stdout; file descriptor 1 is pointed at
stderr before the repository is imported, so whatever the code under test prints cannot
corrupt the conversation. The parent only ever reads numeric arrays from this process.
"""

from __future__ import annotations

import argparse
import os
import pickle
import sys
import time
import traceback
from pathlib import Path
from typing import IO, Any

import numpy as np

from agentx.sandbox import model_checks
from agentx.sandbox.arm_protocol import read_message, write_message
from agentx.sandbox.model_cache import MODEL_FILE

LOG_FIELDS = ("user", "item", "day", "position", "click", "watch_time")


def _parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="arm_server")
    parser.add_argument("repo", type=Path)
    parser.add_argument("data", type=Path)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--load-model", type=Path, default=None, help="A pickled trained model.")
    parser.add_argument("--save-model", type=Path, default=None, help="Pickle it into this dir.")
    parser.add_argument(
        "--checkpoint-dir", type=Path, default=None, help="Where 'checkpoint' pickles the model."
    )
    return parser.parse_args(argv)


def _load(path: Path) -> Any | None:
    """The pickled model, or None (then the arm trains): a missing, truncated or foreign
    file costs a training, never the arm."""
    try:
        with path.open("rb") as stream:
            return pickle.load(stream)
    except Exception:  # noqa: BLE001 - any failure to load means "train instead"
        traceback.print_exc()
        return None


def _save(model: Any, directory: Path) -> bool:
    """Pickle the model into ``directory`` (freshly trained, before it serves, or at a
    checkpoint: the state a new arm starts from); False when it cannot be (an unpicklable
    object, a full disk)."""
    partial = directory / f"{MODEL_FILE}.partial"
    try:
        with partial.open("wb") as stream:
            pickle.dump(model, stream, protocol=5)
        partial.replace(directory / MODEL_FILE)
        return True
    except Exception:  # noqa: BLE001 - the arm serves either way; only the cache misses
        traceback.print_exc()
        partial.unlink(missing_ok=True)
        return False


def _feedback(recsys: Any, arrays: dict[str, np.ndarray]) -> Any:
    """The template's ``Interactions`` for one day of this arm's traffic."""
    data = recsys.data
    build = getattr(data, "interactions_from_arrays", None)
    if build is not None:
        return build(**{name: arrays[name] for name in LOG_FIELDS})
    return data.Interactions(
        user=arrays["user"].astype(np.int64),
        item=arrays["item"].astype(np.int64),
        day=arrays["day"].astype(np.int64),
        position=arrays["position"].astype(np.int64),
        click=arrays["click"].astype(np.int8),
        watch_time=arrays["watch_time"].astype(np.float64),
    )


def serve_forever(args: argparse.Namespace, inbox: IO[bytes], outbox: IO[bytes]) -> None:
    """Train, announce readiness, then answer requests until ``quit`` or end of input."""
    sys.path.insert(0, str(args.repo.resolve()))
    import recsys  # the repository under test

    started, cpu_started = time.perf_counter(), time.process_time()
    model = _load(args.load_model) if args.load_model is not None else None
    loaded = model is not None
    if model is None:
        model = recsys.train(args.data, seed=args.seed)
    saved = _save(model, args.save_model) if args.save_model is not None and not loaded else False
    write_message(
        outbox,
        "ready",
        train_seconds=time.perf_counter() - started,
        cpu_seconds=time.process_time() - cpu_started,
        loaded=loaded,
        saved=saved,
    )
    while True:
        header, arrays = read_message(inbox)
        op = header["op"]
        if op == "quit":
            return
        tick, cpu_tick = time.perf_counter(), time.process_time()
        if op == "serve":
            result = model.serve(
                arrays["users"].astype(np.int64), int(header["k"]), int(header["day"])
            )
            items = np.asarray(result.items)
            candidates = np.asarray(result.candidates_scored)
            write_message(
                outbox,
                "served",
                {
                    "items": items.astype(np.int64, copy=False),
                    "candidates": candidates.astype(np.int64, copy=False),
                },
                seconds=time.perf_counter() - tick,
                cpu_seconds=time.process_time() - cpu_tick,
            )
        elif op == "diagnose":  # measured here, judged by the parent (model_checks.judge)
            report = model_checks.diagnose(
                model, int(header["n_users"]), int(header["n_items"]), int(header["day"])
            )
            write_message(outbox, "diagnosed", report)
        elif op == "checkpoint":
            if args.checkpoint_dir is None:
                raise ValueError("this arm was started without a --checkpoint-dir")
            saved = _save(model, args.checkpoint_dir)
            write_message(outbox, "checkpointed", saved=saved)
        elif op == "update":
            update = getattr(model, "update", None)
            if update is None:
                raise AttributeError("the recommender's Model has no update(feedback) method")
            update(_feedback(recsys, arrays))
            write_message(
                outbox,
                "updated",
                seconds=time.perf_counter() - tick,
                cpu_seconds=time.process_time() - cpu_tick,
            )
        else:
            raise ValueError(f"unknown request {op!r}")


def main(argv: list[str] | None = None) -> int:
    """Exit 0 after ``quit``; on a failure of the code under test, report it and exit 2."""
    args = _parse(sys.argv[1:] if argv is None else argv)
    outbox = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)  # anything the code under test prints goes to stderr
    sys.stdout = sys.stderr
    inbox = sys.stdin.buffer
    try:
        serve_forever(args, inbox, outbox)
    except Exception as error:  # report any failure of the code under test to the parent
        traceback.print_exc()
        message = f"{type(error).__name__}: {str(error).strip()[:500]}"
        try:
            write_message(outbox, "error", message=message)
        except OSError:
            pass  # the parent is gone
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
