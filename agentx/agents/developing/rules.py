"""The ``rules`` dimension: static rules a change must follow before any of it runs.

Checked on what the change *adds* (never on baseline code):

- forbidden patterns in Python: network access, starting processes, files by absolute
  path or outside the repository, dynamic code execution, native code loading;
- default-on switches: a new behaviour must default to off, so the baseline and other
  configurations are unaffected and the experiment's config turns it on;
- new configuration keys must be documented (an inline comment, a comment line above,
  or a mention in a documentation file of the same change);
- protected paths (the target's tests, ``conftest.py`` files, pytest configuration,
  data, git internals) are not edited;
- ruff's error rules (syntax, undefined names, unused or shadowed imports) on the added
  lines, run with ``--isolated`` so a change to the target's lint config cannot mute them.

The OS sandbox enforces the limits at run time whatever the code looks like (see
``agentx.workspace.isolation``); these literal patterns are easy to step around
(aliases, ``importlib``) and only catch the obvious earlier, with a clearer message.
"""

from __future__ import annotations

import fnmatch
import re
import shutil
import subprocess
import sys
from pathlib import Path, PurePosixPath

from agentx.agents.developing.diffs import FileDiff, parse_diff
from agentx.models import CheckResult

# Added Python lines matching these are refused; the value says why.
FORBIDDEN_PATTERNS: dict[str, str] = {
    r"^\s*(import|from)\s+(socket|requests|urllib\d?|http|httpx|aiohttp|ftplib|smtplib|"
    r"telnetlib|paramiko|websockets?)\b": "network access",
    r"^\s*(import|from)\s+(subprocess|pty|multiprocessing)\b"
    r"|\bos\.(system|popen|exec\w*|spawn\w*|fork\w*|posix_spawn\w*)\s*\(": "starting processes",
    r"\b(open|Path)\(\s*[rbfuRBFU]*['\"](/|~)": "file access by absolute path",
    r"\bPath\.home\(\)|\bexpanduser\(": "file access outside the repository",
    r"\beval\(|(?<![.\w])exec\(|\b__import__\(": "dynamic code execution",
    r"^\s*(import|from)\s+(ctypes|cffi)\b": "native code loading",
}

# Added Python lines matching these give a new switch a default of "on".
DEFAULT_ON_PATTERNS: tuple[str, ...] = (
    r"\b\w+\s*:\s*bool\s*=\s*True\b",
    r"\.get\(\s*['\"][\w.\-]+['\"]\s*,\s*True\s*\)",
    r"\bgetattr\([^)]*,\s*True\s*\)",
    r"(?i)\benviron(\.get\(|\.setdefault\()[^)]*,\s*['\"](1|true|yes|on)['\"]\s*\)",
)

LINT_RULES = "E9,F63,F7,F82,F401,F811,F821"
_CONFIG_SUFFIXES = (".toml", ".cfg", ".ini")
_DOC_SUFFIXES = (".md", ".rst", ".txt")
_KEY = re.compile(r"^\s*([A-Za-z_][\w\-]*)\s*=")


def _short(line: str) -> str:
    return line.strip()[:100]


def forbidden_findings(files: dict[str, FileDiff]) -> list[str]:
    """Forbidden patterns and default-on switches in added Python lines."""
    problems: list[str] = []
    for name, diff in files.items():
        if not name.endswith(".py"):
            continue
        for number, line in diff.added:
            code = line.split("#", 1)[0] if not line.lstrip().startswith("#") else ""
            for pattern, meaning in FORBIDDEN_PATTERNS.items():
                if re.search(pattern, code):
                    problems.append(f"{meaning} at {name}:{number}: {_short(line)}")
            if any(re.search(pattern, code) for pattern in DEFAULT_ON_PATTERNS):
                problems.append(
                    f"default-on switch at {name}:{number}: {_short(line)} "
                    "(new behaviour must default to off; set it on in the config)"
                )
    return problems


def undocumented_keys(root: Path, files: dict[str, FileDiff]) -> list[str]:
    """New configuration keys with no comment and no mention in a changed doc file."""
    docs = " ".join(
        line
        for name, diff in files.items()
        if name.endswith(_DOC_SUFFIXES)
        for _, line in diff.added
    )
    problems: list[str] = []
    for name, diff in files.items():
        if not name.endswith(_CONFIG_SUFFIXES) or not (root / name).is_file():
            continue
        lines = (root / name).read_text().splitlines()
        existing = {m.group(1) for line in diff.removed if (m := _KEY.match(line))}
        for number, line in diff.added:
            match = _KEY.match(line)
            if not match or match.group(1) in existing:
                continue
            key = match.group(1)
            above = lines[number - 2].strip() if number >= 2 else ""
            if "#" in line.split("=", 1)[1] or above.startswith("#") or key in docs:
                continue
            problems.append(
                f"undocumented config key at {name}:{number}: {key} "
                "(add an inline # comment saying what it does and which value is off)"
            )
    return problems


def is_protected(name: str, protected: list[str]) -> bool:
    """Whether the repository path ``name`` falls under one of the ``protected`` entries.

    An entry ending in ``/`` protects a directory; an entry without a ``/`` (``conftest.py``,
    ``pytest.ini``) protects every file of that name at any depth, since pytest reads a
    ``conftest.py`` from any directory it collects; other entries are glob patterns on
    the whole path.
    """
    for entry in protected:
        if entry.endswith("/"):
            if name == entry.rstrip("/") or name.startswith(entry):
                return True
        elif "/" not in entry:
            if fnmatch.fnmatchcase(PurePosixPath(name).name, entry):
                return True
        elif fnmatch.fnmatchcase(name, entry) or name == entry:
            return True
    return False


def protected_findings(files: list[str], protected: list[str]) -> list[str]:
    """Touched files under a protected path (tests, pytest configuration, data, git)."""
    return [f"edits protected path {name}" for name in files if is_protected(name, protected)]


def lint_findings(root: Path, files: dict[str, FileDiff]) -> tuple[list[str], str | None]:
    """Ruff error-rule diagnostics on added lines; and a note when lint could not run."""
    targets = {n: d for n, d in files.items() if n.endswith(".py") and (root / n).is_file()}
    if not targets:
        return [], None
    ruff = shutil.which("ruff") or str(Path(sys.executable).with_name("ruff"))
    if not Path(ruff).exists():
        return [], "lint skipped: ruff is not installed"
    command = [ruff, "check", "--isolated", "--no-cache", "--output-format", "concise"]
    try:
        result = subprocess.run(
            [*command, "--select", LINT_RULES, *targets],
            cwd=root,
            capture_output=True,
            text=True,
            timeout=60,
        )
    except (subprocess.TimeoutExpired, OSError) as error:
        return [], f"lint skipped: {error}"
    problems = []
    for line in result.stdout.splitlines():
        parts = line.split(":", 3)
        if len(parts) < 4 or parts[0] not in targets or not parts[1].isdigit():
            continue
        if int(parts[1]) in targets[parts[0]].added_numbers:
            problems.append(f"lint at {parts[0]}:{parts[1]}:{parts[3].strip()}")
    return problems, None


def rules_check(root: Path, diff_text: str, files: list[str], protected: list[str]) -> CheckResult:
    """Static rules on the change; each finding names the file, line and rule."""
    parsed = parse_diff(diff_text)
    problems = protected_findings(files, protected)
    problems += forbidden_findings(parsed)
    problems += undocumented_keys(root, parsed)
    lint, note = lint_findings(root, parsed)
    problems += lint
    detail = "; ".join(problems) or (
        "no forbidden pattern, default-on switch, protected path, undocumented config key "
        "or lint error" + (f" ({note})" if note else "")
    )
    return CheckResult(
        dimension="rules",
        passed=not problems,
        detail=detail,
        data={"findings": problems[:20]},
    )
