"""Studio / LangGraph Server entry point for the full loop.

The server supplies its own checkpointer, so the graph is compiled without one; settings
come from ``AGENTX_*`` environment variables and the optional settings file. The server
holds the workspace lock from its first run until it stops (``STUDIO_HOLDER``), so a CLI
run on the same workspace is refused instead of merging into the same sandbox.
"""

from agentx.graph.builder import build_graph
from agentx.graph.context import STUDIO_HOLDER

graph = build_graph(checkpointer=None, holder=STUDIO_HOLDER)
