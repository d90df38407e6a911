"""Located code spans: the parts of the relevant files a change needs, ranked by relevance.

Why: pasting whole files cost ~8,000 tokens on the tiny sandbox and cannot scale to a
production repository. The Developing Agent instead sees spans: each top-level function or
class of a Python file (methods of a long class separately, plus the import header), each
section of any other text file (a TOML table, a paragraph). A span's text is an exact
slice of the file, so the model can copy ``search`` texts from it verbatim.

Spans are scored by what the change is about: the files it is located in, the files it
already changed, the symbols, config keys and terms of the proposal and the technique
note, and the lines a failure's traceback points at. The prompt takes them best first
until the token budget is spent (:func:`agentx.llm.budget.fit_template`).
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

from pydantic import BaseModel

from agentx.workspace import syntax
from agentx.workspace.edits import EditError, read_inside

#: A class longer than this many lines is shown method by method.
SPLIT_CLASS_LINES = 60
_WORD = re.compile(r"[A-Za-z_][A-Za-z0-9_]{2,}")
_TRACE_LINE = re.compile(r'File "([^"]+)", line (\d+)|([\w./-]+\.py):(\d+)')
#: Words too common to say anything about relevance.
_STOP = frozenset(
    "the and for with from that this not are its into def self return none true false "
    "import class value values int str float list dict".split()
)


class Span(BaseModel):
    """An exact slice of one file (lines ``start``..``end``, 1-based, inclusive)."""

    path: str
    start: int
    end: int
    label: str
    text: str
    score: float = 0.0

    def render(self) -> str:
        """The span as a prompt block (header, then the verbatim text in a fence)."""
        return (
            f"### {self.path} lines {self.start}-{self.end} ({self.label})\n```\n{self.text}\n```"
        )


def _python_spans(path: str, text: str) -> list[Span]:
    lines = text.splitlines()
    try:
        tree = syntax.parse(text)
    except SyntaxError:
        return _text_spans(path, text)
    ranges: list[tuple[int, int, str]] = []
    body = list(tree.body)
    first_def = next(
        (n for n in body if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef)),
        None,
    )
    header_end = (_start(first_def) - 1) if first_def is not None else len(lines)
    if header_end >= 1:
        ranges.append((1, header_end, "module header"))
    for node in body:
        if not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            continue
        start, end = _start(node), node.end_lineno or node.lineno
        kind = "class" if isinstance(node, ast.ClassDef) else "def"
        if isinstance(node, ast.ClassDef) and end - start > SPLIT_CLASS_LINES:
            methods = [
                n for n in node.body if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef)
            ]
            head_end = (_start(methods[0]) - 1) if methods else end
            ranges.append((start, head_end, f"class {node.name}"))
            for method in methods:
                label = f"{node.name}.{method.name}()"
                ranges.append((_start(method), method.end_lineno or method.lineno, label))
            continue
        ranges.append((start, end, f"{kind} {node.name}"))
    # Module-level statements between definitions (constants) belong to the next block
    # only by accident; show them as their own spans so nothing relevant is unreachable.
    covered = {line for a, b, _ in ranges for line in range(a, b + 1)}
    gap: list[int] = []
    for number in [*range(1, len(lines) + 1), len(lines) + 1]:
        if number <= len(lines) and number not in covered and lines[number - 1].strip():
            gap.append(number)
            continue
        if gap:
            ranges.append((gap[0], gap[-1], "module statements"))
            gap = []
    return [
        Span(path=path, start=a, end=b, label=label, text="\n".join(lines[a - 1 : b]))
        for a, b, label in sorted(ranges)
        if b >= a
    ]


def _start(node: ast.AST) -> int:
    decorators = getattr(node, "decorator_list", [])
    return min([node.lineno, *(d.lineno for d in decorators)])  # type: ignore[attr-defined]


def _text_spans(path: str, text: str) -> list[Span]:
    """Sections of a text file: a TOML/INI table or a blank-line separated paragraph."""
    lines = text.splitlines()
    spans, start = [], 1
    for number in range(1, len(lines) + 2):
        line = lines[number - 1] if number <= len(lines) else None
        boundary = line is None or (line.startswith("[") and number > start)
        if boundary or (line is not None and not line.strip() and number - start > 25):
            end = number - 1
            while end >= start and not lines[end - 1].strip():
                end -= 1
            if end >= start:
                head = lines[start - 1].strip()
                label = head if head.startswith("[") else "section"
                spans.append(
                    Span(
                        path=path,
                        start=start,
                        end=end,
                        label=label,
                        text="\n".join(lines[start - 1 : end]),
                    )
                )
            start = number
    return spans


def spans_of(root: Path, path: str) -> list[Span]:
    """Every span of one repository file (none when it cannot be read)."""
    try:
        text = read_inside(root, path)
    except (EditError, OSError, UnicodeDecodeError):
        return []
    return _python_spans(path, text) if path.endswith(".py") else _text_spans(path, text)


def terms_of(*texts: str) -> set[str]:
    """Identifiers and words worth matching (``snake_case``, dotted keys split too)."""
    found: set[str] = set()
    for text in texts:
        for word in _WORD.findall(text):
            lowered = word.lower()
            if lowered not in _STOP:
                found.add(lowered)
    return found


def trace_lines(evidence: str) -> dict[str, set[int]]:
    """File → line numbers that a failure's traceback or report points at."""
    found: dict[str, set[int]] = {}
    for match in _TRACE_LINE.finditer(evidence):
        name = match.group(1) or match.group(3)
        number = int(match.group(2) or match.group(4))
        found.setdefault(name, set()).add(number)
    return found


def rank_spans(
    root: Path,
    files: list[str],
    terms: set[str],
    located: set[str],
    changed: set[str],
    evidence: str = "",
) -> list[Span]:
    """Spans of ``files`` scored and sorted most relevant first.

    Args:
        root: the worktree.
        files: the files worth showing (located, changed, or named by the evidence).
        terms: words of the proposal, the technique note and the failure.
        located: files the proposal or the technique names as implementation locations.
        changed: files the change already touched.
        evidence: the failing evidence (traceback lines raise their spans to the top).
    """
    pointed = trace_lines(evidence)
    spans: list[Span] = []
    for path in files:
        lines_hit = {
            number
            for name, numbers in pointed.items()
            if name == path or name.endswith("/" + path)
            for number in numbers
        }
        for span in spans_of(root, path):
            words = terms_of(span.text)
            score = float(len(words & terms))
            score += 3.0 if path in located else 0.0
            score += 4.0 if path in changed else 0.0
            if any(span.start <= n <= span.end for n in lines_hit):
                score += 20.0
            if span.label == "module header":
                score += 1.0
            span.score = score
            spans.append(span)
    spans.sort(key=lambda s: (-s.score, s.path, s.start))
    return spans
