"""A map of a Python repository: files and their top-level symbols, from the AST."""

from __future__ import annotations

import ast
from pathlib import Path

from agentx.target.models import FileInfo, SymbolInfo
from agentx.workspace import syntax


def _symbols(tree: ast.Module) -> list[SymbolInfo]:
    found: list[SymbolInfo] = []
    for node in tree.body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            kind = "class" if isinstance(node, ast.ClassDef) else "function"
            doc = (ast.get_docstring(node) or "").split("\n")[0]
            found.append(SymbolInfo(name=node.name, kind=kind, line=node.lineno, doc=doc))
        elif isinstance(node, ast.Assign | ast.AnnAssign):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            for target in targets:
                if isinstance(target, ast.Name) and target.id.isupper():
                    found.append(SymbolInfo(name=target.id, kind="constant", line=node.lineno))
    return found


def map_repository(root: Path, pattern: str = "**/*.py") -> list[FileInfo]:
    """Files under ``root`` matching ``pattern`` with their top-level symbols."""
    files: list[FileInfo] = []
    for path in sorted(root.glob(pattern)):
        if any(part.startswith(".") for part in path.relative_to(root).parts):
            continue
        try:
            tree = syntax.parse(path.read_text())
        except (SyntaxError, UnicodeDecodeError):
            files.append(FileInfo(path=str(path.relative_to(root))))
            continue
        files.append(FileInfo(path=str(path.relative_to(root)), symbols=_symbols(tree)))
    return files


def registry_keys(path: Path, registry: str) -> list[str]:
    """String keys of a module-level dict literal named ``registry`` (e.g. ``FEATURES``)."""
    try:
        tree = syntax.parse(path.read_text())
    except (OSError, SyntaxError):
        return []
    for node in tree.body:
        target = None
        if isinstance(node, ast.Assign) and len(node.targets) == 1:
            target, value = node.targets[0], node.value
        elif isinstance(node, ast.AnnAssign):
            target, value = node.target, node.value
        if isinstance(target, ast.Name) and target.id == registry and isinstance(value, ast.Dict):
            return [
                k.value
                for k in value.keys
                if isinstance(k, ast.Constant) and isinstance(k.value, str)
            ]
    return []
