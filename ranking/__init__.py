"""Ranking: scoring candidate offers for a driver in a situation, and learning from feedback.

`Ranker` (`ranking.candidates`) is the one interface the recommendation endpoint calls (`score`,
then `reasons` for the answer). Behind it: `BaselineRanker` (transparent, until a model version
is active) and `ranking.learned.LearnedRanker` (the global model plus the driver's online
correction). Around it:

- `features`: the one feature definition (serving, logs and training);
- `model`, `training`, `online`: the global estimator, fitting it and the driver prior, and the
  per-driver state and its update (what `POST /v1/feedback` runs);
- `exploration`: the order a slate is filled in, with propensities;
- `learning`, `registry`: the Redis side (driver profiles, served and feedback logs, export;
  model versions);
- `datasets`, `evaluation`, `offpolicy`, `simulation`: the analysts' tools.

Only `learning` and `registry` touch Redis; nothing here imports Flask.
"""

from .baseline import BaselineRanker
from .candidates import Candidates, Ranker, Situation

__all__ = ["BaselineRanker", "Candidates", "Ranker", "Situation"]
