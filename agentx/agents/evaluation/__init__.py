"""Evaluation Agent: staged, guardrail-vetoed rollouts, verdicts and knowledge cards.

Modules: ``rollout`` (one stage: assignment, traffic, SRM, effects, guardrails, early stop),
``analysis`` (per-metric estimates and the guardrail rule), ``exchange`` (composite score and
trades), ``review`` (human review of moderate breaches), ``verdict`` (KEEP/EXTEND/DISCARD),
``cards`` (knowledge cards), ``truth`` (verdicts against ground truth), ``policy`` (harness).
"""
