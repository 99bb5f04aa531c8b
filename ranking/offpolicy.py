"""Off-policy evaluation: how a candidate model would have done on traffic another one served.

Each logged decision is the first item of one recommendation: the candidates the logging policy
chose from (the top `DECISION_CANDIDATES` by its own score, as feature rows), which one it
showed first and with what propensity, and the reward (1 if the driver accepted or redeemed
it). For a target policy that picks greedily by a candidate model's predicted acceptance (with
optional epsilon exploration over all eligible candidates), the estimates are:

- IPS: mean of r * w, with w = pi(a | x) / p(a | x), the importance weight;
- SNIPS: sum(r * w) / sum(w), self-normalised: a little biased, much less variance;
- DR (doubly robust): mean of q(x, pi) + w * (r - q(x, a)), where q is the candidate model's own
  predicted acceptance: unbiased if either the propensities or q are right.

Confidence intervals are 95% normal intervals for IPS and DR (per-decision terms are
independent) and percentile bootstrap intervals for SNIPS. The logging policy's own value
is the mean observed reward, with its normal interval.

Limits, stated: the target policy is evaluated on the logged top candidates only (an item the
candidate model would rank first from outside them counts as never chosen, which biases the
estimate down for models that disagree strongly with the logging one), and only the first
position of each slate is evaluated. Pure numpy; nothing here reads Redis.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

DECISION_CANDIDATES = 10
_Z95 = 1.959964


@dataclass(frozen=True)
class Decisions:
    """Logged first-position decisions, one row each."""

    q: list[np.ndarray]       # per decision: the candidate model's P(take) of each candidate
    chosen: np.ndarray        # index into the decision's candidates, -1: outside them
    propensity: np.ndarray    # the logging policy's probability of that choice
    eligible: np.ndarray      # how many candidates the logging policy chose from
    reward: np.ndarray        # 1 taken, 0 not


def target_probabilities(q: np.ndarray, epsilon: float, eligible: int) -> np.ndarray:
    """pi(a | x) for each logged candidate: the best by q, and a uniform share when
    exploring over all `eligible` candidates (ties to the first, like a stable sort)."""
    pi = np.full(len(q), epsilon / max(eligible, 1))
    if len(q):
        pi[int(np.argmax(q))] += 1.0 - epsilon
    return pi


def estimate(decisions: Decisions, epsilon: float = 0.0, bootstrap: int = 1000,
             seed: int = 0) -> dict[str, dict[str, float]]:
    n = len(decisions.reward)
    if n == 0:
        raise ValueError("no logged decisions to evaluate")
    weight = np.empty(n)
    direct = np.empty(n)   # q(x, pi): the model's expected reward of the target policy
    q_logged = np.empty(n)  # q(x, a): its prediction for what was shown
    agrees = np.zeros(n, bool)  # the candidate's own first choice is the one shown
    for i, (q, chosen, eligible) in enumerate(zip(decisions.q, decisions.chosen,
                                                   decisions.eligible, strict=True)):
        pi = target_probabilities(q, epsilon, int(eligible))
        # the uniform share outside the logged candidates is valued at their mean prediction
        outside = max(int(eligible) - len(q), 0) * epsilon / max(int(eligible), 1)
        direct[i] = pi @ q + outside * (q.mean() if len(q) else 0.0)
        if chosen >= 0:
            weight[i], q_logged[i] = pi[chosen], q[chosen]
            agrees[i] = int(np.argmax(q)) == chosen
        else:
            weight[i] = epsilon / max(int(eligible), 1)
            q_logged[i] = q.mean() if len(q) else 0.0
    weight /= decisions.propensity
    reward = decisions.reward.astype(float)
    ips_terms = reward * weight
    dr_terms = direct + weight * (reward - q_logged)
    rng = np.random.default_rng(seed)
    snips_boot = np.concatenate([  # a million resampled indices at a time, not bootstrap × n
        _snips(ips_terms, weight, rng.integers(0, n, (rows, n)))
        for rows in np.diff([*range(0, bootstrap, max(1, 1_000_000 // n)), bootstrap])])
    return {
        "logging_policy": _normal(reward),
        "ips": _normal(ips_terms),
        "snips": {"value": float(ips_terms.sum() / max(weight.sum(), 1e-12)),
                  "low": float(np.percentile(snips_boot, 2.5)),
                  "high": float(np.percentile(snips_boot, 97.5))},
        "dr": _normal(dr_terms),
        "decisions": {"value": float(n), "low": float(n), "high": float(n)},
        "matched": {"value": float(np.mean(agrees)), "low": float("nan"),
                    "high": float("nan")},
    }


def _snips(ips_terms: np.ndarray, weight: np.ndarray, resamples: np.ndarray) -> np.ndarray:
    return ips_terms[resamples].sum(1) / np.maximum(weight[resamples].sum(1), 1e-12)


def _normal(terms: np.ndarray) -> dict[str, float]:
    mean = float(terms.mean())
    half = _Z95 * float(terms.std(ddof=1)) / np.sqrt(len(terms)) if len(terms) > 1 else np.nan
    return {"value": mean, "low": mean - half, "high": mean + half}


def load_decisions(path, predict) -> Decisions:
    """Decisions exported by `offers ranking export` (decisions.npz), with `predict` (feature
    rows -> P(take)) giving the candidate model's q for every logged candidate."""
    data = np.load(path)
    q = predict(data["features"].astype(np.float64)) if len(data["features"]) else np.zeros(0)
    bounds = np.cumsum(data["sizes"])[:-1]
    return Decisions(q=np.split(q, bounds) if len(data["sizes"]) else [],
                     chosen=data["chosen"], propensity=data["propensity"],
                     eligible=data["eligible"], reward=data["reward"])
