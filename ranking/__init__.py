"""Ranking: scoring candidate offers for a driver. Models follow the scikit-learn estimator API.

Filled in by the recommendation and preference-model work."""
