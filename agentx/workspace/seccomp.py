"""A seccomp filter that forbids creating processes: the process limit of confined runs.

``RLIMIT_NPROC`` does not bind root (the kernel exempts uid 0), and a pids cgroup is not
available everywhere AgentX runs, so confined code is limited to *one* process at the
kernel level instead: ``fork``, ``vfork`` and ``clone`` without ``CLONE_THREAD`` fail
with ``EPERM``; ``clone3`` (whose flags a classic BPF filter cannot read) fails with
``ENOSYS``, which makes glibc fall back to ``clone`` for threads. Threads stay allowed
(numpy and the interpreter use them); their number is bounded by the address-space
limit. ``execve`` stays allowed, because bubblewrap applies the filter before it starts
the interpreter; an ``exec`` only replaces the confined process with another one under
the same filter, namespaces and limits (the audit hook still refuses it from Python).

System calls of another ABI than the native one (``int 0x80`` on x86-64, the x32 ABI)
are refused outright: they would use other syscall numbers.

The program is handed to ``bwrap --seccomp FD`` as raw ``struct sock_filter`` records.
"""

from __future__ import annotations

import errno
import platform
import struct
from dataclasses import dataclass

# struct seccomp_data offsets
_NR, _ARCH, _ARG0 = 0, 4, 16
# classic BPF opcodes
_LD_ABS = 0x20  # BPF_LD | BPF_W | BPF_ABS
_JEQ = 0x15  # BPF_JMP | BPF_JEQ | BPF_K
_JGE = 0x35  # BPF_JMP | BPF_JGE | BPF_K
_JSET = 0x45  # BPF_JMP | BPF_JSET | BPF_K
_RET = 0x06  # BPF_RET | BPF_K
_ALLOW = 0x7FFF0000
_ERRNO = 0x00050000
_CLONE_THREAD = 0x00010000
_X32_BIT = 0x40000000


@dataclass(frozen=True)
class _Arch:
    """System-call numbers of one architecture (``forks``: fork-like calls it has)."""

    audit: int  # AUDIT_ARCH_* value in seccomp_data.arch
    clone: int
    clone3: int
    forks: tuple[int, ...]
    x32: bool  # numbers with bit 30 set belong to the x32 ABI


_ARCHES = {
    "x86_64": _Arch(0xC000003E, clone=56, clone3=435, forks=(57, 58), x32=True),
    "aarch64": _Arch(0xC00000B7, clone=220, clone3=435, forks=(), x32=False),
}


def supported() -> bool:
    """True when this machine's architecture has a filter (x86-64, aarch64)."""
    return platform.machine() in _ARCHES


def no_new_processes_filter() -> bytes:
    """The compiled filter for this machine, ready for ``bwrap --seccomp``.

    Raises:
        RuntimeError: the architecture is not one the filter knows.
    """
    arch = _ARCHES.get(platform.machine())
    if arch is None:
        raise RuntimeError(f"no process-limit filter for the {platform.machine()} architecture")
    deny = _ERRNO | errno.EPERM
    # Each entry: (code, jump-if-true label, jump-if-false label, k); labels resolve below.
    program: list[tuple[int, str | None, str | None, int]] = [
        (_LD_ABS, None, None, _ARCH),
        (_JEQ, None, "deny", arch.audit),
        (_LD_ABS, None, None, _NR),
    ]
    if arch.x32:
        program.append((_JGE, "deny", None, _X32_BIT))
    program += [(_JEQ, "deny", None, number) for number in arch.forks]
    program += [
        (_JEQ, "nosys", None, arch.clone3),
        (_JEQ, None, "allow", arch.clone),
        (_LD_ABS, None, None, _ARG0),
        (_JSET, "allow", "deny", _CLONE_THREAD),
    ]
    labels = {"allow": len(program), "deny": len(program) + 1, "nosys": len(program) + 2}
    returns = [_ALLOW, deny, _ERRNO | errno.ENOSYS]
    out = bytearray()
    for index, (code, true, false, k) in enumerate(program):
        jt = labels[true] - index - 1 if true else 0
        jf = labels[false] - index - 1 if false else 0
        out += struct.pack("=HBBI", code, jt, jf, k)
    for value in returns:
        out += struct.pack("=HBBI", _RET, 0, 0, value)
    return bytes(out)
