"""Exploration: the order a slate is filled in, and the probability of every choice made.

A policy turns scores into an order. Each position is logged with its propensity: the
probability that the policy picks that item at that position, given the items picked before it.
Logged with the features and the outcome, that is what off-policy evaluation needs (IPS, SNIPS
and doubly robust estimates in `ranking.evaluation`): without it, logged data only says how the
policy that ran did, never how another would.

Policies are configured by name (`policy_from_spec`, e.g. "epsilon:0.1", "softmax:0.05",
"greedy"), draw from the numpy Generator they are given, and loop over slate positions only
(a few dozen), never over candidates.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np


class Policy(Protocol):
    name: str

    def order(self, scores: np.ndarray, length: int,
              rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """The first `length` positions (indices into `scores`) and each one's propensity."""


@dataclass(frozen=True)
class Greedy:
    """Best first, always: propensity 1 for every position (no exploration)."""

    name: str = "greedy"

    def order(self, scores, length, rng):
        order = np.argsort(-scores, kind="stable")[:length]
        return order, np.ones(len(order))


@dataclass(frozen=True)
class EpsilonGreedy:
    """Each position: with probability `epsilon` a uniformly random remaining item, otherwise
    the best remaining one."""

    epsilon: float = 0.1
    name: str = "epsilon"

    def order(self, scores, length, rng):
        n = len(scores)
        length = min(length, n)
        ranked = np.argsort(-scores, kind="stable")
        taken = np.zeros(n, dtype=bool)
        order = np.empty(length, dtype=np.intp)
        propensity = np.empty(length)
        best = 0  # position in `ranked` of the best item not yet taken
        for k in range(length):
            while taken[ranked[best]]:
                best += 1
            remaining = n - k
            if rng.random() < self.epsilon:
                pick = np.flatnonzero(~taken)[rng.integers(remaining)]
            else:
                pick = ranked[best]
            chance = self.epsilon / remaining
            propensity[k] = chance + (1 - self.epsilon) * (pick == ranked[best])
            order[k], taken[pick] = pick, True
        return order, propensity


@dataclass(frozen=True)
class Softmax:
    """Plackett-Luce sampling with weights exp(score / temperature): each position picks a
    remaining item with probability proportional to its weight (Gumbel top-k, in one sort)."""

    temperature: float = 0.05
    name: str = "softmax"

    def order(self, scores, length, rng):
        logits = (scores - scores.max()) / self.temperature if len(scores) else scores
        keys = logits + rng.gumbel(size=len(scores))
        order = np.argsort(-keys, kind="stable")[:length]
        weights = np.exp(logits)
        before = np.concatenate([[0.0], np.cumsum(weights[order])[:-1]])
        return order, np.minimum(weights[order] / (weights.sum() - before), 1.0)


def policy_from_spec(spec: str) -> Policy:
    """"greedy", "epsilon:<epsilon>" or "softmax:<temperature>"."""
    name, _, value = spec.partition(":")
    try:
        if name == "greedy" and not value:
            return Greedy()
        if name == "epsilon" and 0.0 <= float(value) <= 1.0:
            return EpsilonGreedy(float(value))
        if name == "softmax" and float(value) > 0.0:
            return Softmax(float(value))
    except ValueError:
        pass
    raise ValueError(f"unknown exploration policy {spec!r}: use greedy, epsilon:<0..1> or "
                     "softmax:<temperature>")
