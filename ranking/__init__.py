"""Ranking: scoring candidate offers for a driver in a situation.

`Ranker` is the one interface the recommendation endpoint calls (`score`, then `reasons` for
the answer); behind it is the transparent baseline until a learned, per-driver model replaces
it.
"""

from .baseline import BaselineRanker
from .candidates import Candidates, Ranker, Situation

__all__ = ["BaselineRanker", "Candidates", "Ranker", "Situation"]
