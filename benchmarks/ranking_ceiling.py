"""How far per-driver learning could go on the coupon survey: the protocol's split, with oracles.

Same folds, model and warm/scored rows as `benchmarks.ranking_cv`. Besides (a) the global model
and (b) per-driver online learning from the warm rows, it prints two oracles that cheat on
purpose, fitting a driver's correction (MAP, the trained prior) on the very rows being scored:
only a bias, and all of the driver terms. They bound what any estimate of those terms from the
warm rows could reach. Last, (k): a nearest-neighbour estimate that is not an online state at
all (training drivers who answered the same scenarios, weighted by how often they agreed with
this driver's warm answers), blended with (b) in logits: whether the population's answers hold
information the Gaussian prior misses.

    .venv/bin/python -m benchmarks.ranking_ceiling ../shared/data/coupon/coupons_train.csv
"""

from __future__ import annotations

import argparse
from collections import defaultdict

import numpy as np
from sklearn.model_selection import GroupKFold

from ranking import online
from ranking.datasets import read_dataset
from ranking.evaluation import roc_auc
from ranking.features import TRIP_PURPOSES
from ranking.training import _driver_map, replay_warm_start, train, warm_start_split

SCENARIO_FIELDS = ("arrival_hour", "weather", "temperature_c", "passengers", "trip_purpose",
                   "category", "price_level", "expires_in_s", "detour_s", "ahead")
KNN_BLEND = 0.4


def oracle_logits(terms, logits, y, groups, scored, covariance):
    """Each scored row's logit with its driver's MAP correction fitted on their scored rows."""
    out = logits.copy()
    precision = np.linalg.inv(covariance)
    for g in np.unique(groups):
        rows = np.flatnonzero((groups == g) & scored)
        w, _ = _driver_map(terms[rows], logits[rows], y[rows], precision)
        out[rows] = logits[rows] + terms[rows] @ w
    return out


def neighbour_estimates(train_answers, scenario, y, groups, warm, prior_p):
    """P(take) of each scored row from training drivers' answers to the same scenario."""
    out = prior_p.copy()
    for g in np.unique(groups):
        rows = np.flatnonzero(groups == g)
        fed, scored = rows[warm[rows]], rows[~warm[rows]]
        total, weight = np.zeros(len(scored)), np.ones(len(scored))
        for answers in train_answers.values():
            common = [i for i in fed if scenario[i] in answers]
            known = np.array([scenario[i] in answers for i in scored])
            if len(common) < 3 or not known.any():
                continue
            agreement = np.mean([answers[scenario[i]] == y[i] for i in common])
            w = np.exp((agreement - 1) * len(common)) * known
            total += w * np.array([answers.get(scenario[i], 0) for i in scored])
            weight += w
        out[scored] = (total + prior_p[scored]) / weight
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data")
    parser.add_argument("--format", default="coupon-survey")
    args = parser.parse_args()
    data = read_dataset(args.data, args.format)
    _, scenario = np.unique(np.column_stack([np.nan_to_num(data.raw[f].astype(float), nan=-9)
                                             for f in SCENARIO_FIELDS]),
                            axis=0, return_inverse=True)
    scenario = scenario.ravel()
    # The questionnaire's order: which trips the warm halves hold, and which the scored.
    warm = warm_start_split(data.driver_id, 0.5)
    purposes = data.raw["trip_purpose"]
    for label, rows in (("warm", warm), ("scored", ~warm)):
        counts = {name: int((purposes[rows] == code).sum())
                  for code, name in enumerate(TRIP_PURPOSES)}
        print(f"{label} rows by trip purpose: {counts}")
    names = ("(a) global", "(b) per-driver", "oracle bias", "oracle terms", "(b)+(k) blend")
    pooled = defaultdict(list)
    print(f"{'fold':>4} " + " ".join(f"{n:>14}" for n in names))
    for k, (train_rows, test_rows) in enumerate(
            GroupKFold(5).split(data.y, data.y, data.driver_id)):
        model = train(data.take(train_rows))
        test = data.take(test_rows)
        features, y, groups = test.features(), test.y, test.driver_id
        logits = model.global_logits(features)
        terms = online.driver_terms(features)
        scored, p = replay_warm_start(features, y, groups, logits, model.prior_covariance, 0.5)
        b = np.log(p / (1 - p))
        answers: dict[str, dict[int, int]] = defaultdict(dict)
        for i in train_rows:
            answers[data.driver_id[i]][scenario[i]] = data.y[i]
        knn = neighbour_estimates(answers, scenario[test_rows], y, groups,
                                  warm_start_split(groups, 0.5), p)
        knn = np.clip(knn, 1e-6, 1 - 1e-6)
        variants = {
            names[0]: logits, names[1]: b,
            names[2]: oracle_logits(terms[:, :1], logits, y, groups, scored,
                                    model.prior_covariance[:1, :1]),
            names[3]: oracle_logits(terms, logits, y, groups, scored, model.prior_covariance),
            names[4]: (1 - KNN_BLEND) * b + KNN_BLEND * np.log(knn / (1 - knn)),
        }
        for name, values in variants.items():
            pooled[name].append(values[scored])
        pooled["y"].append(y[scored])
        print(f"{k:>4} " + " ".join(f"{roc_auc(y[scored], v[scored]):>14.4f}"
                                    for v in variants.values()), flush=True)
    y = np.concatenate(pooled["y"])
    print("pool " + " ".join(f"{roc_auc(y, np.concatenate(pooled[n])):>14.4f}" for n in names))


if __name__ == "__main__":
    main()
