"""The OS boundary of confined processes: a bubblewrap (``bwrap``) command line.

Every process that runs target or agent-written code starts inside bubblewrap with

- a new, empty root file system that is read-only once set up; the system directories
  (``/usr`` and the ``/bin``, ``/lib`` links), a few ``/etc`` files the dynamic loader
  reads, the interpreter (``sys.base_prefix``), the virtual environment (``sys.prefix``)
  and AgentX's own package are bound read-only. Nothing else of the host is visible:
  not ``/root``, ``/home``, ``/tmp``, ``/work``, other worktrees, the baseline repository,
  the arms and truth caches, the workspace's memory, checkpoints or harness;
- the working directory (the worktree) and the directories the caller lists (a private
  scratch directory, a private output directory) bound read-write; the worktree's
  ``.git`` bound read-only on top, so the code cannot redirect the parent's git;
- new network, PID, IPC and UTS namespaces (no network at all, loopback included: the
  namespace's own loopback reaches nothing of the host), ``--die-with-parent``,
  ``--new-session``, every capability dropped, and a seccomp filter that forbids new
  processes (see :mod:`agentx.workspace.seccomp`);
- a minimal ``/dev`` (read-only: no ``/dev/shm``) and the namespace's own ``/proc``.

Whether bubblewrap can start here is probed once per process (:func:`probe`). Where it
cannot, untrusted code is refused with :class:`IsolationUnavailable`; a run whose code
is all shipped with AgentX (an offline run: catalog recipes on the template) may run
under the audit-hook guard alone when the policy allows it
(``sandbox.allow_unconfined_trusted``).
"""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from agentx.workspace import seccomp

INSTALL_HINT = "install bubblewrap (Debian/Ubuntu: apt-get install bubblewrap)"
_SYSTEM_LINKS = ("/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32")
_ETC_FILES = (
    "/etc/ld.so.cache",
    "/etc/ld.so.conf",
    "/etc/ld.so.conf.d",
    "/etc/localtime",
    "/etc/alternatives",
    "/etc/nsswitch.conf",
    "/etc/passwd",
    "/etc/group",
)
_NAMESPACES = ("--unshare-net", "--unshare-pid", "--unshare-ipc", "--unshare-uts")


class IsolationUnavailable(RuntimeError):
    """The OS sandbox cannot start here and the code is not allowed to run without it."""


@dataclass(frozen=True)
class IsolationPolicy:
    """What to do when bubblewrap cannot start.

    Trust is a property of the run, not of one call: in an offline run every line of
    code that runs is shipped with AgentX (the template and the catalog's recipes); in
    an LLM run any code, the baseline included once a model's change was merged, may be
    model-written. So ``trusted_code`` is set for offline runs only, and such a run may
    fall back to the audit-hook guard alone when ``allow_unconfined_trusted`` says so.
    Untrusted code is always refused.
    """

    trusted_code: bool = False
    allow_unconfined_trusted: bool = False


_policy = IsolationPolicy()


def configure(policy: IsolationPolicy) -> None:
    """Set the process-wide policy (``build_resources`` does, from the run's settings)."""
    global _policy
    _policy = policy


def current_policy() -> IsolationPolicy:
    """The process-wide policy (strict until configured)."""
    return _policy


@dataclass(frozen=True)
class Probe:
    """Whether bubblewrap starts on this machine, and why not when it does not."""

    available: bool
    bwrap: str | None
    reason: str = ""


@functools.cache
def probe() -> Probe:
    """Start one trivial confined interpreter; cached for the life of the process.

    Fails when ``bwrap`` is not installed, when user namespaces are disabled (for a
    non-root user), or when the container forbids the mounts.
    """
    bwrap = shutil.which("bwrap")
    if bwrap is None:
        return Probe(False, None, f"bubblewrap (bwrap) is not installed: {INSTALL_HINT}")
    if not seccomp.supported():
        return Probe(False, bwrap, "no process-limit filter for this CPU architecture")
    with tempfile.TemporaryDirectory(prefix="agentx-probe-") as here:
        argv = [*bwrap_argv(bwrap, Path(here), (), ()), sys.executable, "-S", "-c", "pass"]
        try:
            result = subprocess.run(argv, capture_output=True, text=True, timeout=60, env={})
        except (OSError, subprocess.TimeoutExpired) as error:
            return Probe(False, bwrap, f"bubblewrap cannot start: {error}")
    if result.returncode != 0:
        line = (result.stderr.strip().splitlines() or ["exit " + str(result.returncode)])[-1]
        reason = f"bubblewrap cannot start here ({line}): {INSTALL_HINT} and allow user namespaces"
        return Probe(False, bwrap, reason)
    return Probe(True, bwrap)


def readonly_roots() -> list[Path]:
    """Host directories confined Python needs: interpreter, environment, AgentX's package."""
    import agentx  # the package directory itself: installed editable, it is a checkout

    candidates = [Path(sys.base_prefix), Path(sys.prefix), Path(agentx.__file__).parent]
    roots: list[Path] = []
    for path in sorted({p.resolve() for p in candidates if p.exists()}, key=lambda p: len(p.parts)):
        if not any(root == path or root in path.parents for root in roots):
            roots.append(path)
    return roots


def _system_binds() -> list[str]:
    args = ["--ro-bind", "/usr", "/usr"]
    for name in _SYSTEM_LINKS:
        path = Path(name)
        if path.is_symlink():
            args += ["--symlink", os.readlink(path), name]
        elif path.is_dir():
            args += ["--ro-bind", name, name]
    for name in _ETC_FILES:
        if os.path.lexists(name):
            args += ["--ro-bind", name, name]
    return args


def bwrap_argv(
    bwrap: str,
    cwd: Path,
    writable: Sequence[Path],
    protected: Sequence[Path],
    *,
    readable: Sequence[Path] = (),
    cwd_writable: bool = True,
    seccomp_fd: int | None = None,
) -> list[str]:
    """The bubblewrap command line up to (not including) the command to run.

    Mount order matters: bubblewrap cannot create a mount point inside a read-only bind,
    so the empty root comes first, then the read-only system, then the writable
    directories, then the read-only interpreter and package (which win where they lie
    inside a writable directory), then ``protected`` paths read-only on top of the
    writable ones, and last the root itself is made read-only.

    Args:
        bwrap: path of the ``bwrap`` executable.
        cwd: the working directory (writable unless ``cwd_writable`` is False).
        writable: further writable directories (scratch, private outputs).
        protected: existing paths inside writable directories to keep read-only.
        readable: further host paths to show read-only (e.g. the data an arm trains on).
        cwd_writable: False binds the working directory read-only (a run that writes
            only into its private directories).
        seccomp_fd: a readable descriptor holding the process-limit filter.
    """
    args = [bwrap, "--tmpfs", "/", *_system_binds()]
    args += ["--dev", "/dev", "--remount-ro", "/dev", "--proc", "/proc"]
    for path in readable:
        args += ["--ro-bind", str(path), str(path)]
    args += ["--bind" if cwd_writable else "--ro-bind", str(cwd), str(cwd)]
    for path in writable:
        args += ["--bind", str(path), str(path)]
    for path in readonly_roots():
        args += ["--ro-bind", str(path), str(path)]
    for path in protected:
        if os.path.lexists(path):
            args += ["--ro-bind", str(path), str(path)]
    args += ["--chdir", str(cwd), "--remount-ro", "/", *_NAMESPACES]
    args += ["--die-with-parent", "--new-session"]
    if os.geteuid() == 0:
        args += ["--cap-drop", "ALL"]  # a privileged bwrap would otherwise keep root's caps
    if seccomp_fd is not None:
        args += ["--seccomp", str(seccomp_fd)]
    return args


def require(policy: IsolationPolicy | None = None) -> Probe:
    """The probe when bubblewrap can start; otherwise decide by the policy.

    Returns the (unavailable) probe when the run's trusted code may run unconfined.

    Raises:
        IsolationUnavailable: the sandbox cannot start and the code may not run without it.
    """
    found = probe()
    if found.available:
        return found
    policy = policy or current_policy()
    if policy.trusted_code and policy.allow_unconfined_trusted:
        return found
    if policy.trusted_code:
        raise IsolationUnavailable(
            f"refusing to run code without the OS sandbox: {found.reason} "
            "(or set sandbox.allow_unconfined_trusted for an offline run)"
        )
    raise IsolationUnavailable(
        f"refusing to run model-written code without the OS sandbox: {found.reason}"
    )
