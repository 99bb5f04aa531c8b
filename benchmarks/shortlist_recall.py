"""How often the linear stand-in's shortlist holds the boosted trees' own top 10.

Draws candidate sets of 4,000 rows from the coupon survey's feature rows, ranks them by the
trained model's global logit (the trees) and by its linear stand-in (`RankingModel.shortlist`),
and prints the share of the trees' top 10 inside the stand-in's top K, for several K.

    .venv/bin/python -m benchmarks.shortlist_recall MODEL_DIR \
        ../shared/data/coupon/coupons_train.csv
"""

from __future__ import annotations

import argparse

import numpy as np

from ranking.datasets import read_coupon_survey
from ranking.training import RankingModel


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model")
    parser.add_argument("survey")
    parser.add_argument("--sets", type=int, default=200)
    parser.add_argument("--candidates", type=int, default=4000)
    args = parser.parse_args()
    model = RankingModel.load(args.model)
    features = read_coupon_survey(args.survey).features()
    trees, linear = model.global_logits(features), model.shortlist.logits(features)
    print(f"correlation of the logits: {np.corrcoef(trees, linear)[0, 1]:.3f}")
    for k in (50, 100, 200, 400):
        rng = np.random.default_rng(0)
        recall = []
        for _ in range(args.sets):
            rows = rng.choice(len(features), args.candidates, replace=False)
            best = set(rows[np.argsort(-trees[rows])[:10]])
            recall.append(len(best & set(rows[np.argsort(-linear[rows])[:k]])) / 10)
        print(f"top 10 of the trees inside the stand-in's top {k:>3}: {np.mean(recall):.1%}")


if __name__ == "__main__":
    main()
