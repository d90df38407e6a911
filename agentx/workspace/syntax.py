"""Parse Python source safely from several threads.

Experiments of a wave verify and map repositories side by side, in threads. CPython 3.11's
AST constructor keeps its recursion depth in interpreter-wide state, so two threads in
``ast.parse`` at once can fail with ``SystemError: AST constructor recursion depth
mismatch`` (python/cpython#106905, fixed in 3.12). Parsing is fast; one at a time costs
nothing measurable and makes the checks deterministic.
"""

from __future__ import annotations

import ast
import threading

_PARSE = threading.Lock()


def parse(source: str, filename: str = "<unknown>") -> ast.Module:
    """``ast.parse(source, filename)``, one thread at a time.

    Raises:
        SyntaxError: the source is not valid Python.
    """
    with _PARSE:
        return ast.parse(source, filename=filename)
