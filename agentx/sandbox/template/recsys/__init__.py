"""A small learned recommender: ALS retrieval, a linear ranker and greedy re-ranking.

Public API (what the experiment harness calls)::

    from recsys import train, load_config
    model = train(data_dir, config=None, seed=0)
    result = model.serve(user_ids, k, day)   # result.items, result.candidates_scored
"""

from .config import Config, ConfigError, load_config
from .data import DataError
from .pipeline import Model, ServeResult, train

__all__ = ["Config", "ConfigError", "DataError", "Model", "ServeResult", "load_config", "train"]
