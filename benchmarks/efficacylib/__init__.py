"""Building blocks of ``benchmarks/efficacy.py``: the configuration space, repository
states, the ground-truth judge, one staged A/B, the strategies and their scoring.

Benchmark-side only: the loop is driven through its public entry points (``run_loop``,
``Settings``, the workspace layout), so these modules keep working when the loop's
internals change.
"""
