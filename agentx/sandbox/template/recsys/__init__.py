"""A small learned recommender: ALS retrieval, a linear ranker and greedy re-ranking.

Public API (what the experiment harness calls)::

    from recsys import train, load_config
    from recsys.data import interactions_from_arrays
    model = train(data_dir, config=None, seed=0)
    result = model.serve(user_ids, k, day)   # result.items, result.candidates_scored
    model.update(interactions_from_arrays(user=..., item=..., day=..., position=...,
                                          click=..., watch_time=...))  # that day's traffic
"""

from .config import Config, ConfigError, load_config
from .data import DataError, Interactions, interactions_from_arrays
from .pipeline import Model, ServeResult, train

__all__ = [
    "Config",
    "ConfigError",
    "DataError",
    "Interactions",
    "Model",
    "ServeResult",
    "interactions_from_arrays",
    "load_config",
    "train",
]
