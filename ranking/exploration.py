"""Exploration: the order a slate is filled in, and the probability of every choice made.

A policy turns scores into an order. Each position is logged with its propensity: the
probability that the policy picks that item at that position, given the items picked before it.
Logged with the features and the outcome, that is what off-policy evaluation needs (IPS, SNIPS
and doubly robust estimates in `ranking.evaluation`): without it, logged data only says how the
policy that ran did, never how another would.

Policies are configured by name (`policy_from_spec`, e.g. "epsilon:0.1", "softmax:0.05",
"greedy"), draw from the numpy Generator they are given, and loop in Python over slate
positions only (a few dozen); what goes over every candidate is numpy or compiled.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np
from numba import njit


class Policy(Protocol):
    name: str

    def order(self, scores: np.ndarray, length: int, rng: np.random.Generator,
              draws: np.ndarray | None = None, ties: np.ndarray | None = None,
              ) -> tuple[np.ndarray, np.ndarray]:
        """The first `length` positions (indices into `scores`) and each one's propensity.
        `draws` (rows x columns of scores drawn from the model's posterior, or any increasing
        function of them: only their order counts) is what Thompson sampling orders by; the
        other policies ignore it. `ties` orders equal scores, or equal draws (smallest first:
        serving passes arrival times, so what the car reaches first comes first), then the
        row; softmax's random keys are never equal and need none."""


@dataclass(frozen=True)
class Greedy:
    """Best first, always: propensity 1 for every position (no exploration)."""

    name: str = "greedy"

    def order(self, scores, length, rng, draws=None, ties=None):
        order = best_first(scores, length, ties)
        return order, np.ones(len(order))


@dataclass(frozen=True)
class EpsilonGreedy:
    """Each position: with probability `epsilon` a uniformly random remaining item, otherwise
    the best remaining one."""

    epsilon: float = 0.1
    name: str = "epsilon"

    def order(self, scores, length, rng, draws=None, ties=None):
        n = len(scores)
        length = min(length, n)
        ranked = best_first(scores, n, ties)
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

    def order(self, scores, length, rng, draws=None, ties=None):
        logits = (scores - scores.max()) / self.temperature if len(scores) else scores
        keys = logits + rng.gumbel(size=len(scores))
        order = np.argsort(-keys, kind="stable")[:length]
        # Each pick's chance among what remained, in logs: the log of the weights left (those
        # never picked, then the picks from each position on, summed from the end) rather than
        # the total less the weights picked, which loses every digit once one item dominates
        # (and divides 0 by 0 past the items whose weights underflow).
        unpicked = np.ones(len(scores), bool)
        unpicked[order] = False
        rest = np.logaddexp.reduce(logits[unpicked]) if unpicked.any() else -np.inf
        left = np.logaddexp.accumulate(np.concatenate([[rest], logits[order][::-1]]))[::-1][:-1]
        return order, np.minimum(np.exp(logits[order] - left), 1.0)


@dataclass(frozen=True)
class Thompson:
    """Thompson sampling: order by one draw of the scores from the model's posterior (the
    first column of `draws`). A position's propensity, which has no closed form, is estimated
    from the other draws: the share in which the item shown would have come first among those
    not yet placed, with one pseudo-count so it is never zero. Without draws (a ranker with no
    posterior, like the baseline) it is greedy with propensity 1."""

    draws: int = 32
    name: str = "thompson"

    def order(self, scores, length, rng, draws=None, ties=None):
        if draws is None or draws.shape[1] < 2:
            return Greedy().order(scores, length, rng, ties=ties)
        if ties is not None:
            # Draws can be equal (candidates the trees did not rescore share a capped logit,
            # and alike ones the same driver terms): rows in order of `ties`, so that equal
            # draws go by it, as a stable sort by `ties` and then by draw would rank them.
            by_ties = np.argsort(ties, kind="stable")
            order, propensity = self.order(scores[by_ties], length, rng, draws[by_ties])
            return by_ties[order], propensity
        n = len(scores)
        length = min(length, n)
        # Each draw's best rows, enough to find its best among those not yet placed; the
        # first draw's are the order (one pass over all the draws, no sort of a column).
        top = column_tops(np.ascontiguousarray(draws, dtype=np.float64), min(length + 1, n))
        order = np.ascontiguousarray(top[:length, 0])  # one layout to compile, whatever n
        return order, _shares_first(np.ascontiguousarray(top[:, 1:]), order, n)


def best_first(scores: np.ndarray, length: int, ties: np.ndarray | None = None) -> np.ndarray:
    """The rows of the `length` highest scores, best first, equal scores in order of `ties`
    and then of row, unknown (nan) scores last (among any of -inf, in the same order): what a
    stable sort by `ties` and then by score would rank first, sorting only the rows that can
    make the cut (a slate's few dozen of thousands of candidates)."""
    ties = np.zeros(len(scores)) if ties is None else ties
    rows = top_rows(scores, length, ties)
    known = np.where(np.isnan(scores[rows]), -np.inf, scores[rows])
    return rows[np.lexsort((rows, ties[rows], -known))]


def top_rows(values: np.ndarray, k: int, then: np.ndarray) -> np.ndarray:
    """The rows of the k largest values; among rows equal to the k-th, the smallest `then`
    (the earliest arrival), then the first row. The stand-in gives many candidates the same
    logit (features it clips alike, such as a chain's offers along the road), and which of
    them the trees rescore must not depend on the order the index returned them in."""
    if k >= len(values):
        return np.arange(len(values))
    if k <= 0:
        return np.empty(0, np.intp)
    values = np.where(np.isnan(values), -np.inf, values)  # unknown: last, never dropped
    kth = np.partition(values, len(values) - k)[len(values) - k]
    above = np.flatnonzero(values > kth)
    tied = np.flatnonzero(values == kth)
    wanted, first = k - len(above), then[tied]
    if wanted < len(tied):  # thousands can tie (a capped logit): sort only those that can win
        last = np.partition(first, wanted - 1)[wanted - 1]
        if not np.isnan(last):  # (nan sorts last: then any row may be wanted)
            near = first <= last
            tied, first = tied[near], first[near]
    return np.concatenate([above, tied[np.argsort(first, kind="stable")[:wanted]]])


@njit(cache=True)
def _shares_first(top, order, n):
    """For each position of `order`, the share of the draws (columns of `top`, each its best
    rows in order) whose best row not yet placed is the one placed there, plus one
    pseudo-count."""
    depth, width = top.shape
    pointer = np.zeros(width, np.int64)  # each draw's best row not yet placed, in `top`
    placed = np.zeros(n, np.bool_)
    propensity = np.empty(len(order))
    for k in range(len(order)):
        pick = order[k]
        wins = 0
        for j in range(width):
            while pointer[j] < depth - 1 and placed[top[pointer[j], j]]:
                pointer[j] += 1
            wins += top[pointer[j], j] == pick
        propensity[k] = (wins + 1) / (width + 1)
        placed[pick] = True
    return propensity


def column_tops(values: np.ndarray, depth: int) -> np.ndarray:
    """Per column of `values` (rows x columns, no nan), the rows of its `depth` largest values,
    largest first, equal values in row order (depth x columns), as a stable sort would rank
    them. One pass over the rows keeping a min-heap per column: after the first `depth` rows
    nearly every value loses to its heap's least at one comparison, where partitioning each
    column moved all of it (33 draws of thousands of candidates per request)."""
    keep, index = _column_heaps(values, depth)
    # Each heap ranked by numpy (value, then row), not in the compiled loop: sorts inside
    # compiled loops gave wrong rankings in this suite (tests/test_compiled.py).
    ranked = np.lexsort((index, -keep), axis=1)
    return np.ascontiguousarray(np.take_along_axis(index, ranked, axis=1).T)


@njit(cache=True)
def _column_heaps(values, depth):
    """`column_tops`' heaps: per column, its `depth` largest values and their rows, unordered
    (columns x depth)."""
    rows, width = values.shape
    keep = np.empty((width, depth))
    index = np.empty((width, depth), np.int64)
    least = np.full(width, -np.inf)  # each heap's root, side by side for the hot comparison
    for i in range(rows):
        for j in range(width):
            v = values[i, j]
            if i < depth:  # filling: sift the new last entry up
                k = i
                while k > 0:
                    parent = (k - 1) // 2
                    if keep[j, parent] < v:  # the root is the least kept (latest row on ties)
                        break
                    keep[j, k], index[j, k] = keep[j, parent], index[j, parent]
                    k = parent
                keep[j, k], index[j, k] = v, i
                least[j] = keep[j, 0]
            elif v > least[j]:  # beats the least kept (a tie loses: a later row)
                k = 0
                while True:  # sift down from the root
                    child = 2 * k + 1
                    if child >= depth:
                        break
                    other = child + 1
                    if other < depth and (keep[j, other] < keep[j, child] or (
                            keep[j, other] == keep[j, child]
                            and index[j, other] > index[j, child])):
                        child = other
                    if v < keep[j, child] or (v == keep[j, child] and i > index[j, child]):
                        break
                    keep[j, k], index[j, k] = keep[j, child], index[j, child]
                    k = child
                keep[j, k], index[j, k] = v, i
                least[j] = keep[j, 0]
    return keep, index


def warm_up() -> None:
    """Compile Thompson sampling's loops (or load them from numba's cache) before the first
    request."""
    Thompson(2).order(np.zeros(3), 2, np.random.default_rng(0), np.zeros((3, 3)))


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
