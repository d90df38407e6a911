"""docs/architecture.md shows the compiled loop: its mermaid block is generated from the
graph, so a change to the wiring that is not redrawn fails here."""

from __future__ import annotations

from pathlib import Path

from agentx.graph.diagram import block, embedded, loop_mermaid, main

DOC = Path(__file__).resolve().parents[1] / "docs" / "architecture.md"


def test_the_architecture_diagram_is_the_compiled_graph() -> None:
    mermaid = loop_mermaid()
    for node in ("intake", "learn", "evolve_harness", "conclude"):
        assert f"({node})" in mermaid
    for subgraph in ("brainstorm_agent", "experiment", "developing_agent", "evaluation_agent"):
        assert f"subgraph {subgraph}" in mermaid
    assert embedded(DOC.read_text()) == block(mermaid)
    assert main(["--check", str(DOC)]) == 0


def test_a_stale_diagram_is_reported(tmp_path: Path) -> None:
    stale = tmp_path / "architecture.md"
    stale.write_text(DOC.read_text().replace("(learn)", "(learn_old)"))
    assert main(["--check", str(stale)]) == 1
    assert main(["--write", str(stale)]) == 0
    assert main(["--check", str(stale)]) == 0
