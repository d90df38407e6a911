"""Studio / LangGraph Server entry point for the full loop.

The server supplies its own checkpointer, so the graph is compiled without one; settings
come from ``AGENTX_*`` environment variables and the optional settings file.
"""

from agentx.graph.builder import build_graph

graph = build_graph(checkpointer=None)
