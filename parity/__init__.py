"""Tier parity, above both tiers: move an MLP between the scalar and vectorized tiers
(:mod:`parity.convert`) and compare their numbers (:mod:`parity.compare`)."""
from parity.compare import compare_batch, compare_trajectory
from parity.convert import from_vectorized, to_vectorized

__all__ = ["compare_batch", "compare_trajectory", "from_vectorized", "to_vectorized"]
