"""AgentX: agent-driven self-iteration of recommender systems."""
