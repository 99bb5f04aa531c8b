"""The ranking protocol: 5-fold cross-validation grouped by driver on the coupon survey.

For each fold: `ranking.training.train` on the other four (the global model and the
per-driver prior, fitted on those drivers only), then `ranking.evaluation.evaluate` on the
held-out drivers with a warm start (each driver's first half of rows, in row order, fed as
feedback through `ranking.online.update`; the rest scored). Prints the AUC of (a) the global
model alone and (b) with per-driver online learning, on the same scored rows, per fold and
pooled over folds.

    .venv/bin/python -m benchmarks.ranking_cv ../shared/data/coupon/coupons_train.csv
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
from sklearn.model_selection import GroupKFold

from ranking.datasets import FORMATS, read_dataset
from ranking.evaluation import evaluate, roc_auc
from ranking.training import train


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data")
    parser.add_argument("--format", default="coupon-survey", choices=FORMATS)
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--warm-start-fraction", type=float, default=0.5)
    parser.add_argument("--json", help="also write the figures to this file")
    args = parser.parse_args()

    data = read_dataset(args.data, args.format)
    ys, global_ps, driver_ps, folds = [], [], [], []
    print(f"{len(data)} rows, {len(np.unique(data.driver_id))} drivers; "
          f"{args.folds}-fold GroupKFold by driver, warm start {args.warm_start_fraction}")
    print(f"{'fold':>4} {'rows':>6} {'(a) global':>11} {'(b) per-driver':>15} {'b-a':>7}"
          f" {'prior scale':>12} {'s':>5}")
    for k, (train_rows, test_rows) in enumerate(
            GroupKFold(args.folds).split(data.y, data.y, data.driver_id)):
        started = time.perf_counter()
        model = train(data.take(train_rows), warm_fraction=args.warm_start_fraction)
        result = evaluate(model, data.take(test_rows), args.warm_start_fraction)
        a, b = roc_auc(result.y, result.p_global), roc_auc(result.y, result.p)
        folds.append({"fold": k, "rows": int(len(result.y)), "global_auc": a,
                      "per_driver_auc": b, "prior_scale": model.info.get("prior_scale")})
        print(f"{k:>4} {len(result.y):>6} {a:>11.4f} {b:>15.4f} {b - a:>+7.4f}"
              f" {model.info.get('prior_scale')!s:>12} {time.perf_counter() - started:>5.1f}")
        ys.append(result.y)
        global_ps.append(result.p_global)
        driver_ps.append(result.p)
    y = np.concatenate(ys)
    a, b = roc_auc(y, np.concatenate(global_ps)), roc_auc(y, np.concatenate(driver_ps))
    print(f"{'pool':>4} {len(y):>6} {a:>11.4f} {b:>15.4f} {b - a:>+7.4f}")
    print(f"mean {'':>6} {np.mean([f['global_auc'] for f in folds]):>11.4f}"
          f" {np.mean([f['per_driver_auc'] for f in folds]):>15.4f}")
    if args.json:
        with open(args.json, "w") as file:
            json.dump({"folds": folds, "pooled": {"rows": int(len(y)), "global_auc": a,
                                                  "per_driver_auc": b}}, file, indent=2)


if __name__ == "__main__":
    main()
