"""The hidden truth of a world: users' tastes and clusters, items' appeal, quality and release.

Only the simulator sees these arrays. The recommender sees what a real system logs
(categories, creators, release days, impressions, clicks, watch time).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from agentx.sandbox.world import WorldParams

#: Arrival day of users who exist before logging starts.
ALWAYS = -10_000


@dataclass(frozen=True)
class Population:
    """Latent users and items of a world, drawn once from the world's seed."""

    user_taste: np.ndarray  # [U, D] latent taste vectors
    category_interest: np.ndarray  # [U, C] initial interests (rows sum to 1); they drift
    user_cluster: np.ndarray  # [U] int8 index into world.clusters
    user_activity: np.ndarray  # [U] logit offset of the daily return probability
    user_engagement: np.ndarray  # [U] utility offset (click propensity)
    user_budget: np.ndarray  # [U] median attention budget of a session, seconds
    user_arrival: np.ndarray  # [U] int32 first day the user exists (ALWAYS = before logging)
    item_vec: np.ndarray  # [I, D] latent item vectors
    item_category: np.ndarray  # [I] int32
    item_creator: np.ndarray  # [I] int32
    item_appeal: np.ndarray  # [I] base appeal (popularity driver)
    item_clickbait: np.ndarray  # [I] attraction that does not turn into watch time
    item_quality: np.ndarray  # [I] drives watch time and satisfaction
    item_release_day: np.ndarray  # [I] int32, may be negative (back catalogue)

    @property
    def n_users(self) -> int:
        """Number of users."""
        return int(self.user_taste.shape[0])

    @property
    def n_items(self) -> int:
        """Number of items."""
        return int(self.item_vec.shape[0])


def draw_population(world: WorldParams) -> Population:
    """Draw users and items from ``world.seed`` (same seed, same population)."""
    rng = np.random.default_rng([world.seed, 1])
    n_u, n_i, n_c, dim = world.n_users, world.n_items, world.n_categories, world.latent_dim

    category_centres = rng.normal(0.0, 1.0, size=(n_c, dim)) / np.sqrt(dim)
    item_category = rng.choice(n_c, size=n_i, p=rng.dirichlet(np.full(n_c, 3.0))).astype(np.int32)
    item_vec = category_centres[item_category] + rng.normal(0, 0.6, size=(n_i, dim)) / np.sqrt(dim)

    shares = np.array([cluster.share for cluster in world.clusters])
    user_cluster = rng.choice(len(world.clusters), size=n_u, p=shares / shares.sum())
    alpha = np.array([cluster.taste_concentration for cluster in world.clusters])[user_cluster]
    # Dirichlet rows with per-user concentration: normalised Gamma draws.
    interest = rng.gamma(alpha[:, None], 1.0, size=(n_u, n_c))
    interest = np.clip(
        interest / np.maximum(interest.sum(axis=1, keepdims=True), 1e-12), 1e-4, None
    )
    interest /= interest.sum(axis=1, keepdims=True)
    # Users' latent taste leans towards the centres of the categories they prefer.
    user_taste = interest @ category_centres * 2.0 + rng.normal(0, 0.5, size=(n_u, dim)) / np.sqrt(
        dim
    )

    creators_per_category = max(1, world.n_creators // n_c)
    item_creator = (
        item_category * creators_per_category + rng.integers(0, creators_per_category, size=n_i)
    ) % world.n_creators

    total_days = world.log_days + world.online_days
    n_new = min(world.items_per_day * total_days, n_i // 2)
    release = rng.integers(-60, -1, size=n_i)
    new_idx = rng.choice(n_i, size=n_new, replace=False)
    release[new_idx] = np.sort(rng.integers(0, total_days, size=n_new))

    arrival = np.full(n_u, ALWAYS, dtype=np.int32)
    newcomers = rng.random(n_u) < world.new_user_share
    arrival[newcomers] = rng.integers(1, total_days, size=int(newcomers.sum()))

    traits = np.random.default_rng([world.seed, 3])
    return Population(
        user_taste=user_taste.astype(np.float32),
        category_interest=interest.astype(np.float32),
        user_cluster=user_cluster.astype(np.int8),
        user_activity=rng.normal(0.0, world.user_activity_sd, size=n_u).astype(np.float32),
        user_engagement=traits.normal(0.0, world.user_engagement_sd, size=n_u).astype(np.float32),
        user_budget=(
            world.session_budget_s * np.exp(traits.normal(0.0, world.session_budget_sd / 2, n_u))
        ).astype(np.float32),
        user_arrival=arrival,
        item_vec=item_vec.astype(np.float32),
        item_category=item_category,
        item_creator=item_creator.astype(np.int32),
        item_appeal=rng.normal(0.0, world.appeal_sd, size=n_i).astype(np.float32),
        item_clickbait=rng.normal(0.0, world.clickbait_sd, size=n_i).astype(np.float32),
        item_quality=rng.normal(0.0, world.quality_sd, size=n_i).astype(np.float32),
        item_release_day=release.astype(np.int32),
    )
