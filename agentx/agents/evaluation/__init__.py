"""Evaluation Agent: staged, guardrail-vetoed rollouts, verdicts and knowledge cards."""
