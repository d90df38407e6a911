"""The simulator's side of an arm: a confined process that serves and learns day by day.

:class:`ArmProcess` starts ``agentx.sandbox.arm_server`` for one repository snapshot under
the same confinement as every other run of target code (:mod:`agentx.workspace.process`),
then talks to it with :mod:`agentx.sandbox.arm_protocol`. Given a
:class:`~agentx.sandbox.model_cache.ModelCache`, an arm of a snapshot trained before loads
that model instead of training it again. Every reply is read with a
deadline and checked (shape, range) before the simulator uses it; any failure of the arm
(a crash, a timeout, a malformed reply) raises :class:`ArmFailure` with one line saying why,
and the process group is killed, so nothing of a broken arm keeps running.
"""

from __future__ import annotations

import os
import selectors
import subprocess
import tempfile
import time
from pathlib import Path
from typing import IO, Any

import numpy as np

from agentx.sandbox.arm_protocol import (
    MAX_HEADER_BYTES,
    ProtocolError,
    decode_arrays,
    parse_header,
    payload_size,
    write_message,
)
from agentx.sandbox.model_cache import MODEL_FILE, CachePlan, ModelCache
from agentx.workspace.process import ConfinedCommand, confined_command, kill_group, signal_name

TRAIN_TIMEOUT_S = 900.0
REQUEST_TIMEOUT_S = 300.0
ARM_MEMORY_MB = 6144
#: Largest file an arm may write: its pickled model (a ``default`` control after the
#: pre-period is about 1.2 GB), only ever into the cache's staging directory it is given.
ARM_FILE_MB = 4096
STDERR_TAIL_BYTES = 64 * 1024  # how much of an arm's stderr a failure message reads


class ArmFailure(RuntimeError):
    """An arm crashed, hung, or answered with something that is not a valid reply."""


class ArmProcess:
    """One arm: a confined ``arm_server`` for a repository snapshot, trained and ready.

    Use as a context manager; :meth:`close` always leaves no process behind.
    """

    def __init__(
        self,
        name: str,
        repo: Path,
        data: Path,
        *,
        seed: int,
        slate_size: int,
        n_items: int,
        memory_mb: int = ARM_MEMORY_MB,
        train_timeout_s: float = TRAIN_TIMEOUT_S,
        request_timeout_s: float = REQUEST_TIMEOUT_S,
        model_cache: ModelCache | None = None,
        cache_key: str | None = None,
        load_model: Path | None = None,
        checkpoint_dir: Path | None = None,
    ) -> None:
        self.name = name
        self.repo = Path(repo)
        self.data = Path(data)
        self.seed = seed
        self.slate_size = slate_size
        self.n_items = n_items
        self.memory_mb = memory_mb
        self.train_timeout_s = train_timeout_s
        self.request_timeout_s = request_timeout_s
        self.train_seconds = 0.0
        self.serve_seconds = 0.0
        self.update_seconds = 0.0
        # CPU seconds the arm process reports for its own work (0 when it reports none).
        self.train_cpu_seconds = 0.0
        self.serve_cpu_seconds = 0.0
        self.update_cpu_seconds = 0.0
        self._process: subprocess.Popen[bytes] | None = None
        self._command: ConfinedCommand | None = None
        self._stderr: IO[bytes] | None = None  # the process's stderr (anonymous file)
        self._buffer = b""
        self._tick = 0.0
        self._pending: tuple[int, int] = (0, 0)
        # An explicit model to start from (a checkpoint) replaces the cache's plan; the arm
        # trains only if it cannot be loaded (then ``loaded_model`` is False).
        self._load_model = Path(load_model) if load_model is not None else None
        self._checkpoint_dir = Path(checkpoint_dir) if checkpoint_dir is not None else None
        use_cache = cache_key is not None and load_model is None
        self._cache = model_cache if use_cache else None
        self._cache_key = cache_key if use_cache else None
        self._plan: CachePlan | None = None  # what this arm does about its model (cache)
        self.loaded_model = False  # it loaded a cached model instead of training
        # Feedback held back while the arm trains (see :meth:`defer_readiness`).
        self._held_updates: list[dict[str, np.ndarray]] | None = None

    # ------------------------------------------------------------------ lifecycle
    def __enter__(self) -> ArmProcess:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def start(self) -> None:
        """Start the process and wait until it has trained on the historical logs."""
        self.spawn()
        self.wait_ready()

    def spawn(self) -> None:
        """Start the process; it trains in the background until :meth:`wait_ready`.

        The snapshot and the data are visible read-only; the process may write only its own
        scratch directory (and the cache's staging directory for its model) and talks to the
        simulator through its pipes. An arm whose model another arm is training starts in
        :meth:`wait_ready`, once that model can be loaded.
        """
        if self._cache is not None and self._cache_key is not None:
            self._plan = self._cache.plan(self._cache_key)
            if self._plan.action == "wait":
                return
        self._start_process()

    @property
    def waiting_for_model(self) -> bool:
        """Spawned, but waiting for another arm to train this arm's model (cache)."""
        return self._plan is not None and self._plan.action == "wait"

    def _start_process(self) -> None:
        args = ["-m", "agentx.sandbox.arm_server", str(self.repo), str(self.data)]
        args += ["--seed", str(self.seed)]
        readable, writable = [self.data], []
        plan = self._plan
        if self._load_model is not None:
            args += ["--load-model", str(self._load_model)]
            readable.append(self._load_model.parent)
        elif plan is not None and plan.path is not None:
            if plan.action == "load":
                args += ["--load-model", str(plan.path / MODEL_FILE)]
                readable.append(plan.path)
            else:
                args += ["--save-model", str(plan.path)]
                writable.append(plan.path)
        if self._checkpoint_dir is not None:
            args += ["--checkpoint-dir", str(self._checkpoint_dir)]
            writable.append(self._checkpoint_dir)
        self._command = confined_command(
            args,
            self.repo,
            memory_mb=self.memory_mb,
            file_mb=ARM_FILE_MB,
            readable=readable,
            allow_write=writable,
            cwd_writable=False,
        )
        # An anonymous file (no name on disk): nothing is left behind however this process
        # ends, a kill -9 included; the tail is read back with pread (see _stderr_tail).
        if self._stderr is not None:
            self._stderr.close()
        self._stderr = tempfile.TemporaryFile(prefix="agentx-arm-")  # noqa: SIM115 - see close()
        self._process = subprocess.Popen(
            self._command.argv,
            cwd=self._command.cwd,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._stderr,
            env=self._command.env,
            pass_fds=self._command.pass_fds,
            start_new_session=True,
        )
        self._command.started()

    def wait_ready(self) -> None:
        """Wait until the process has trained; raises :class:`ArmFailure` if it did not."""
        plan = self._plan
        if plan is not None and plan.action == "wait" and self._cache is not None:
            assert plan.event is not None
            plan.event.wait(self.train_timeout_s)
            self._plan = self._cache.plan(plan.key)  # load it, or train (the trainer failed)
            if self._plan.action == "wait":  # still training past the deadline: train too
                self._plan = CachePlan("train", plan.key)
            self._start_process()
        try:
            header, _ = self._receive(self.train_timeout_s, "training")
            if header["op"] != "ready":
                self._fail(f"expected 'ready', got {header['op']!r}")
        except ArmFailure:
            self._finish_plan(saved=False)
            raise
        self.train_seconds = _seconds(header, "train_seconds")
        self.train_cpu_seconds = _seconds(header, "cpu_seconds")
        self.loaded_model = header.get("loaded") is True
        plan = self._plan
        if plan is not None and plan.action == "load" and not self.loaded_model:
            self._cache.discard(plan.key)  # type: ignore[union-attr]  # unreadable: retrained
        self._finish_plan(saved=header.get("saved") is True)

    def defer_readiness(self) -> None:
        """Let the arm keep training while the caller goes on: feedback it is given
        meanwhile is held and replayed, in order, by :meth:`catch_up`, so it ends in exactly
        the state it would have reached waiting first. A rollout's treatment serves no one
        in the pre-period, so it trains while the control serves it."""
        if self._held_updates is None:
            self._held_updates = []

    @property
    def deferred(self) -> bool:
        """Still training, its feedback held (see :meth:`defer_readiness`)."""
        return self._held_updates is not None

    def catch_up(self) -> None:
        """Wait for a deferred arm's training, then let it learn the held feedback in order;
        nothing for an arm that is ready."""
        held = self._held_updates
        if held is None:
            return
        self._held_updates = None
        self.wait_ready()
        for rows in held:
            self.update(rows)

    def _finish_plan(self, saved: bool) -> None:
        """Seal (or drop) what a training arm saved and wake the arms waiting for it."""
        plan, self._plan = self._plan, None
        if plan is not None and plan.action == "train" and self._cache is not None:
            self._cache.finish(plan, saved)

    def close(self) -> None:
        """Ask the process to quit, then make sure it and its children are gone."""
        self._finish_plan(saved=False)  # closed before it was ready: release its waiters
        process = self._process
        if process is not None:
            if process.poll() is None:
                try:
                    write_message(process.stdin, "quit")  # type: ignore[arg-type]
                    process.wait(timeout=5)
                except (OSError, subprocess.TimeoutExpired, ValueError):
                    pass
            kill_group(process)
            process.wait()
            for stream in (process.stdin, process.stdout):
                if stream is not None:
                    stream.close()
            self._process = None
        if self._command is not None:
            self._command.close()
            self._command = None
        if self._stderr is not None:
            self._stderr.close()
            self._stderr = None

    # ------------------------------------------------------------------ requests
    def serve(self, day: int, users: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Slates [n, k] (int64, -1 = empty) and candidates scored [n] for ``users`` on ``day``."""
        self.begin_serve(day, users)
        return self.finish_serve()

    def begin_serve(self, day: int, users: np.ndarray) -> None:
        """Send a serve request; several arms then work side by side until :meth:`finish_serve`."""
        self.catch_up()
        self._tick = time.perf_counter()
        self._pending = (day, int(users.size))
        self._send("serve", {"users": users.astype(np.int64)}, day=int(day), k=self.slate_size)

    def finish_serve(self) -> tuple[np.ndarray, np.ndarray]:
        """The reply to :meth:`begin_serve`, checked."""
        day, n = self._pending
        header, arrays = self._receive(self.request_timeout_s, f"serving day {day}")
        if header["op"] != "served":
            self._fail(f"expected 'served', got {header['op']!r}")
        items, candidates = arrays.get("items"), arrays.get("candidates")
        if items is None or items.shape != (n, self.slate_size):
            shape = None if items is None else items.shape
            self._fail(f"serve returned items of shape {shape}, expected {(n, self.slate_size)}")
        if candidates is None or candidates.shape != (n,):
            shape = None if candidates is None else candidates.shape
            self._fail(f"serve returned candidates_scored of shape {shape}, expected {(n,)}")
        self.serve_seconds += time.perf_counter() - self._tick
        self.serve_cpu_seconds += _seconds(header, "cpu_seconds")
        return items.astype(np.int64), np.clip(candidates, 0, None).astype(np.int64)

    def update(self, rows: dict[str, np.ndarray]) -> None:
        """Give the arm one day of its own impressions (user, item, day, position, click, watch)."""
        self.begin_update(rows)
        self.finish_update()

    def begin_update(self, rows: dict[str, np.ndarray]) -> None:
        """Send one day of feedback; the arm learns while others do too (a deferred arm
        holds it until :meth:`catch_up`)."""
        if self._held_updates is not None:
            self._held_updates.append(rows)
            return
        self._tick = time.perf_counter()
        self._send("update", rows)

    def finish_update(self) -> None:
        """Wait until the arm has learned from the feedback sent by :meth:`begin_update`."""
        if self._held_updates is not None:
            return
        header, _ = self._receive(self.request_timeout_s, "learning from feedback")
        if header["op"] != "updated":
            self._fail(f"expected 'updated', got {header['op']!r}")
        self.update_seconds += time.perf_counter() - self._tick
        self.update_cpu_seconds += _seconds(header, "cpu_seconds")

    def checkpoint(self) -> bool:
        """Have the arm pickle its model as it is now into its checkpoint directory; False
        when it could not (an unpicklable model, a full disk: the caller only loses reuse)."""
        if self._checkpoint_dir is None:
            raise ValueError(f"arm {self.name} was started without a checkpoint directory")
        self.catch_up()
        self._send("checkpoint", {})
        header, _ = self._receive(self.request_timeout_s, "saving a checkpoint")
        if header["op"] != "checkpointed":
            self._fail(f"expected 'checkpointed', got {header['op']!r}")
        return header.get("saved") is True

    def diagnose(self, day: int, n_users: int) -> dict[str, np.ndarray]:
        """The trained model's weights, loss history and sampled scores, for the parent to judge."""
        self.catch_up()
        self._send("diagnose", {}, day=int(day), n_users=int(n_users), n_items=self.n_items)
        header, arrays = self._receive(self.request_timeout_s, "reporting diagnostics")
        if header["op"] != "diagnosed":
            self._fail(f"expected 'diagnosed', got {header['op']!r}")
        return arrays

    # ------------------------------------------------------------------ plumbing
    def _send(self, op: str, arrays: dict[str, np.ndarray], **fields: Any) -> None:
        process = self._require()
        try:
            write_message(process.stdin, op, arrays, **fields)  # type: ignore[arg-type]
        except (BrokenPipeError, OSError, ValueError):
            self._fail("the arm process exited")

    def _receive(
        self, timeout_s: float, doing: str
    ) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        deadline = time.monotonic() + timeout_s
        line = self._read_until_newline(deadline, doing)
        try:
            header = parse_header(line)
        except ProtocolError as error:
            self._fail(f"malformed reply while {doing}: {error}")
        if header["op"] == "error":
            self._fail(str(header.get("message", "error"))[:500])
        payload = self._read_exactly(payload_size(header), deadline, doing)
        try:
            return header, decode_arrays(header, payload)
        except ProtocolError as error:
            self._fail(f"malformed reply while {doing}: {error}")

    def _read_until_newline(self, deadline: float, doing: str) -> bytes:
        while b"\n" not in self._buffer:
            if len(self._buffer) > MAX_HEADER_BYTES:
                self._fail(f"malformed reply while {doing}: header too long")
            self._fill(deadline, doing)
        line, _, self._buffer = self._buffer.partition(b"\n")
        return line + b"\n"

    def _read_exactly(self, size: int, deadline: float, doing: str) -> bytes:
        chunks = [self._buffer[:size]]
        got = len(chunks[0])
        self._buffer = self._buffer[size:]
        while got < size:
            self._fill(deadline, doing)
            take = self._buffer[: size - got]
            self._buffer = self._buffer[len(take) :]
            chunks.append(take)
            got += len(take)
        return b"".join(chunks)

    def _fill(self, deadline: float, doing: str) -> None:
        process = self._require()
        fd = process.stdout.fileno()  # type: ignore[union-attr]
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            self._fail(f"timed out after {self.request_timeout_s:g} s while {doing}", kill=True)
        with selectors.DefaultSelector() as selector:
            selector.register(fd, selectors.EVENT_READ)
            if not selector.select(timeout=remaining):
                self._fail(f"timed out while {doing}", kill=True)
        chunk = os.read(fd, 1 << 20)
        if not chunk:
            process.wait()
            self._fail(f"the arm process exited ({_exit_text(process.returncode)}) while {doing}")
        self._buffer += chunk

    def _require(self) -> subprocess.Popen[bytes]:
        if self._process is None:
            raise ArmFailure(f"arm {self.name} is not running")
        return self._process

    def _stderr_tail(self, lines: int = 12) -> str:
        """The last lines the process wrote to stderr. Read with pread, which leaves the
        file offset the process shares with this one where its own writes put it."""
        if self._stderr is None:
            return ""
        try:
            fd = self._stderr.fileno()
            size = os.fstat(fd).st_size
            start = max(0, size - STDERR_TAIL_BYTES)
            text = os.pread(fd, size - start, start).decode(errors="replace")
        except (OSError, ValueError):
            return ""
        return "\n".join(text.strip().splitlines()[-lines:])

    def _fail(self, reason: str, kill: bool = False) -> Any:
        if kill and self._process is not None:
            kill_group(self._process)
        tail = self._stderr_tail()
        detail = f"arm {self.name}: {reason}"
        raise ArmFailure(f"{detail}\n{tail}" if tail else detail)


def _seconds(header: dict[str, Any], key: str) -> float:
    """A duration the arm reported, or 0.0 when it is missing or not a finite number >= 0."""
    value = header.get(key)
    if isinstance(value, bool) or not isinstance(value, int | float):
        return 0.0
    return float(value) if 0.0 <= value < float("inf") else 0.0


def _exit_text(code: int | None) -> str:
    if code is None:
        return "still running"
    return f"killed by {signal_name(-code)}" if code < 0 else f"exit code {code}"
