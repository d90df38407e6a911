"""Git worktrees, confined subprocesses and strict edits: how code is changed and run safely."""
