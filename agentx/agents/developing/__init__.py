"""Developing Agent: proposals become verified code changes in isolated worktrees."""
