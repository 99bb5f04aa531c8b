"""Off-policy estimates against known answers, and the export -> ope path end to end."""

from __future__ import annotations

import csv

import numpy as np
from click.testing import CliRunner

from api.cli import main
from ranking.datasets import read_log
from ranking.offpolicy import Decisions, estimate, target_probabilities

from .test_learning_loop import feedback, mixed_shop  # noqa: F401
from .test_recommendations import recommend


def _bandit(n: int = 4000, k: int = 5, seed: int = 1):
    """Uniform logging over k candidates whose true acceptance is known."""
    rng = np.random.default_rng(seed)
    q = rng.uniform(0.05, 0.6, (n, k))
    chosen = rng.integers(0, k, n)
    reward = (rng.random(n) < q[np.arange(n), chosen]).astype(int)
    decisions = Decisions(q=list(q), chosen=chosen, propensity=np.full(n, 1 / k),
                          eligible=np.full(n, k), reward=reward)
    return decisions, q


def test_a_policy_evaluated_on_its_own_logs_gets_the_observed_value():
    rng = np.random.default_rng(0)
    q = [rng.random(4) for _ in range(200)]
    chosen = np.array([int(np.argmax(x)) for x in q])
    reward = rng.integers(0, 2, 200)
    decisions = Decisions(q, chosen, np.ones(200), np.full(200, 4), reward)
    figures = estimate(decisions)
    for name in ("ips", "snips", "logging_policy"):
        assert figures[name]["value"] == reward.mean()


def test_estimates_recover_the_value_of_a_better_policy_from_uniform_logs():
    decisions, q = _bandit()
    truth = q.max(axis=1).mean()  # greedy by the true acceptance
    figures = estimate(decisions)
    assert figures["logging_policy"]["value"] < truth - 0.1
    for name in ("ips", "snips", "dr"):
        assert figures[name]["low"] <= truth <= figures[name]["high"], (name, figures[name])
    width = {n: figures[n]["high"] - figures[n]["low"] for n in ("ips", "dr")}
    assert width["dr"] < width["ips"]  # the model's q takes most of the variance


def test_agreement_is_how_often_the_candidates_first_choice_was_shown_whatever_epsilon():
    decisions, q = _bandit()
    agree = np.mean(q.argmax(axis=1) == decisions.chosen)  # about 1 in 5 under uniform logs
    for epsilon in (0.0, 0.2):  # exploring, every logged choice has some weight: not agreement
        assert estimate(decisions, epsilon, bootstrap=10)["matched"]["value"] == agree


def test_the_snips_bootstrap_is_drawn_in_pieces_as_it_was_whole():
    """A million resampled indices at a time (bootstrap × decisions at once: 8 bytes × 1,000
    × 100,000 for the export's cap, and as much again for each array indexed with them): the
    same draws from the same seed, so the same interval."""
    decisions, _ = _bandit(n=3000)
    figures = estimate(decisions, bootstrap=700, seed=3)["snips"]
    rng = np.random.default_rng(3)
    whole = rng.integers(0, 3000, (700, 3000))
    weight = np.array([1.0 if np.argmax(x) == c else 0.0 for x, c in zip(
        decisions.q, decisions.chosen, strict=True)]) * 5
    ips = decisions.reward * weight
    boot = ips[whole].sum(1) / np.maximum(weight[whole].sum(1), 1e-12)
    assert (figures["low"], figures["high"]) == (np.percentile(boot, 2.5),
                                                 np.percentile(boot, 97.5))


def test_target_probabilities_spread_epsilon_over_all_eligible():
    pi = target_probabilities(np.array([0.1, 0.5, 0.2]), epsilon=0.2, eligible=10)
    assert np.allclose(pi, [0.02, 0.82, 0.02])


def test_export_writes_a_training_log_and_decisions_that_ope_reads(
        client, fleet, mixed_shop, active_model, model_dir, redis_url, tmp_path):  # noqa: F811
    served = 0
    for i in range(6):
        answer = recommend(client, fleet, limit=3, driver_id=f"driver-{i % 2}")
        served += len(answer["items"])
        first = answer["items"][0]["offer_id"]
        feedback(client, fleet, answer["recommendation_id"], first,
                 "accept" if i % 2 else "dismiss")
    runner = CliRunner()
    env = {"REDIS_URL": redis_url}
    out = runner.invoke(main, ["ranking", "export", "--out", str(tmp_path)], env=env)
    assert out.exit_code == 0, out.output
    with open(tmp_path / "log.csv", newline="") as file:
        rows = list(csv.DictReader(file))
    assert len(rows) == served
    assert sorted(r["outcome"] for r in rows if r["outcome"] != "none") == \
        ["accept"] * 3 + ["dismiss"] * 3
    assert sum(int(r["label"]) for r in rows) == 3
    assert all("driver-" not in r["driver_id"] for r in rows)  # pseudonymous
    assert len(read_log(tmp_path / "log.csv")) == served  # trainable: --format log
    decisions = np.load(tmp_path / "decisions.npz")
    assert len(decisions["chosen"]) == 6 and decisions["reward"].sum() == 3
    ope = runner.invoke(main, ["ranking", "ope", "--model", str(model_dir), "--decisions",
                               str(tmp_path / "decisions.npz")], env=env)
    assert ope.exit_code == 0, ope.output
    assert "snips" in ope.output and "6 decisions" in ope.output
