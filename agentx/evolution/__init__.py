"""Harness Evolution (SGPO): semantic-gradient edits of the agents' harnesses, kept only
when a replay on the same tasks shows they help.

It sits beside the graph wiring, above the agents: it reads their trajectories and replays
their decision functions with a candidate harness; no agent imports it.
"""
