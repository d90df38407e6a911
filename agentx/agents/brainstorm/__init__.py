"""Brainstorm Agent: goal intake, evidence, ranked and admitted proposals."""
