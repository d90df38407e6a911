"""Import modules by name, one after the other: the "import" half of the syntax check.

Run confined (``run_confined(["-m", "agentx.workspace.imports", "pkg.mod", ...])``) from
a worktree's root, it proves that changed modules import, and runs their import-time
code under the sandbox, before any test does. It exits non-zero on the first failure
with the module's traceback on stderr.
"""

from __future__ import annotations

import importlib
import sys


def main(modules: list[str]) -> None:
    """Import each of ``modules``; an exception propagates with its traceback."""
    for name in modules:
        importlib.import_module(name)


if __name__ == "__main__":
    main(sys.argv[1:])
