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

    def order(self, scores: np.ndarray, length: int, rng: np.random.Generator,
              draws: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """The first `length` positions (indices into `scores`) and each one's propensity.
        `draws` (rows x columns of scores drawn from the model's posterior) is what Thompson
        sampling orders by; the other policies ignore it."""


@dataclass(frozen=True)
class Greedy:
    """Best first, always: propensity 1 for every position (no exploration)."""

    name: str = "greedy"

    def order(self, scores, length, rng, draws=None):
        order = np.argsort(-scores, kind="stable")[:length]
        return order, np.ones(len(order))


@dataclass(frozen=True)
class EpsilonGreedy:
    """Each position: with probability `epsilon` a uniformly random remaining item, otherwise
    the best remaining one."""

    epsilon: float = 0.1
    name: str = "epsilon"

    def order(self, scores, length, rng, draws=None):
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

    def order(self, scores, length, rng, draws=None):
        logits = (scores - scores.max()) / self.temperature if len(scores) else scores
        keys = logits + rng.gumbel(size=len(scores))
        order = np.argsort(-keys, kind="stable")[:length]
        weights = np.exp(logits)
        before = np.concatenate([[0.0], np.cumsum(weights[order])[:-1]])
        return order, np.minimum(weights[order] / (weights.sum() - before), 1.0)


@dataclass(frozen=True)
class Thompson:
    """Thompson sampling: order by one draw of the scores from the model's posterior (the
    first column of `draws`). A position's propensity, which has no closed form, is estimated
    from the other draws: the share in which the item shown would have come first among those
    not yet placed, with one pseudo-count so it is never zero. Without draws (a ranker with no
    posterior, like the baseline) it is greedy with propensity 1."""

    draws: int = 32
    name: str = "thompson"

    def order(self, scores, length, rng, draws=None):
        if draws is None or draws.shape[1] < 2:
            return Greedy().order(scores, length, rng)
        n = len(scores)
        length = min(length, n)
        order = np.argsort(-draws[:, 0], kind="stable")[:length]
        others = draws[:, 1:]
        columns = np.arange(others.shape[1])
        # each column's best rows, enough to find its best among those not yet placed
        depth = min(length + 1, n)
        top = np.argpartition(-others, depth - 1, axis=0)[:depth] if depth < n else \
            np.tile(np.arange(n)[:, None], (1, others.shape[1]))
        top = np.take_along_axis(top, np.argsort(-others[top, columns], axis=0), axis=0)
        pointer = np.zeros(others.shape[1], dtype=np.intp)
        placed = np.zeros(n, dtype=bool)
        propensity = np.empty(length)
        for k, pick in enumerate(order):  # slate positions, not candidates
            winner = top[np.minimum(pointer, depth - 1), columns]
            while placed[winner].any():
                pointer += placed[winner]
                winner = top[np.minimum(pointer, depth - 1), columns]
            propensity[k] = (np.count_nonzero(winner == pick) + 1) / (len(columns) + 1)
            placed[pick] = True
        return order, propensity


def policy_from_spec(spec: str) -> Policy:
    """"greedy", "epsilon:<epsilon>", "softmax:<temperature>" or "thompson:<draws>"."""
    name, _, value = spec.partition(":")
    try:
        if name == "greedy" and not value:
            return Greedy()
        if name == "thompson" and int(value) >= 2:
            return Thompson(int(value))
        if name == "epsilon" and 0.0 <= float(value) <= 1.0:
            return EpsilonGreedy(float(value))
        if name == "softmax" and float(value) > 0.0:
            return Softmax(float(value))
    except ValueError:
        pass
    raise ValueError(f"unknown exploration policy {spec!r}: use greedy, epsilon:<0..1>, "
                     "softmax:<temperature> or thompson:<draws>")
