"""AgentX."""
