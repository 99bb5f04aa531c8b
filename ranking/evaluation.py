"""Evaluating a ranking model the way it is used: per driver, learning from early feedback.

`evaluate` feeds each driver's first floor(F · n) rows (in row order) through
`online.update`, the function POST /v1/feedback calls, and scores the remaining rows with
`online.predict` without learning from them. The metrics are pure functions of labels and
probabilities; the report draws them with matplotlib (imported only when a report is asked).
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from sklearn import metrics

from offers.geo_index import CATEGORIES

from .datasets import Dataset
from .training import RankingModel, replay_warm_start

_EPS = 1e-12


@dataclass(frozen=True)
class Evaluation:
    rows: np.ndarray       # indices into the dataset of the scored rows
    y: np.ndarray
    p: np.ndarray          # with per-driver learning
    p_global: np.ndarray   # the global model alone, same rows


def evaluate(model: RankingModel, data: Dataset, warm_fraction: float) -> Evaluation:
    features = data.features()
    logits = model.global_logits(features)
    scored, p = replay_warm_start(features, data.y, data.driver_id, logits,
                                  model.prior_covariance, warm_fraction, data.feedback_weight)
    rows = np.flatnonzero(scored)
    return Evaluation(rows, data.y[rows], p[rows], 1 / (1 + np.exp(-logits[rows])))


def roc_auc(y: np.ndarray, p: np.ndarray) -> float:
    """Area under the ROC curve; nan when only one class is present."""
    return float(metrics.roc_auc_score(y, p)) if len(np.unique(y)) == 2 else float("nan")


def log_loss(y: np.ndarray, p: np.ndarray) -> float:
    p = np.clip(p, _EPS, 1 - _EPS)
    return float(-np.mean(y * np.log(p) + (1 - y) * np.log(1 - p)))


def accuracy(y: np.ndarray, p: np.ndarray, threshold: float = 0.5) -> float:
    return float(np.mean((p >= threshold) == (y == 1)))


def summary(y: np.ndarray, p: np.ndarray) -> dict[str, float]:
    return {"auc": roc_auc(y, p), "log_loss": log_loss(y, p), "accuracy": accuracy(y, p),
            "rows": int(len(y)), "positive_rate": float(np.mean(y)) if len(y) else float("nan")}


def lift_by_decile(y: np.ndarray, p: np.ndarray) -> np.ndarray:
    """Positive rate in each tenth of the rows by descending p, over the overall rate."""
    order = np.argsort(-p, kind="stable")
    deciles = np.array_split(y[order], 10)
    base = np.mean(y)
    return np.array([np.mean(d) / base if len(d) and base > 0 else np.nan for d in deciles])


def calibration(y: np.ndarray, p: np.ndarray, bins: int = 10) -> tuple[np.ndarray, np.ndarray]:
    """(mean predicted, observed rate) in equal-width bins of p; empty bins are dropped."""
    which = np.minimum((p * bins).astype(int), bins - 1)
    kept = [b for b in range(bins) if np.any(which == b)]
    return (np.array([p[which == b].mean() for b in kept]),
            np.array([y[which == b].mean() for b in kept]))


def auc_by_category(y: np.ndarray, p: np.ndarray, category: np.ndarray) -> dict[str, float]:
    return {CATEGORIES[c]: roc_auc(y[category == c], p[category == c])
            for c in np.unique(category) if c >= 0}


def write_predictions(path: str | Path, data: Dataset, evaluation: Evaluation) -> None:
    """One line per scored row: row (0-based data row in the input file), driver_id, y, p."""
    with open(path, "w", newline="") as file:
        writer = csv.writer(file)
        writer.writerow(["row", "driver_id", "y", "p"])
        for i, y, p in zip(evaluation.rows, evaluation.y, evaluation.p, strict=True):
            writer.writerow([int(data.row[i]), data.driver_id[i], int(y), f"{p:.6f}"])


def write_report(directory: str | Path, data: Dataset, evaluation: Evaluation) -> dict:
    """calibration.png, lift.png, auc_by_category.png and summary.json in `directory`."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    y, category = evaluation.y, data.raw["category"][evaluation.rows]
    curves = {"per-driver": evaluation.p, "global only": evaluation.p_global}

    figure, axes = plt.subplots(figsize=(5, 5))
    axes.plot([0, 1], [0, 1], color="grey", linestyle=":", label="perfect")
    for label, p in curves.items():
        axes.plot(*calibration(y, p), marker="o", label=label)
    axes.set(xlabel="predicted probability", ylabel="observed acceptance rate",
             title="Calibration", xlim=(0, 1), ylim=(0, 1))
    axes.legend()
    figure.savefig(directory / "calibration.png", dpi=100, bbox_inches="tight")
    plt.close(figure)

    figure, axes = plt.subplots(figsize=(6, 4))
    width = 0.4
    for k, (label, p) in enumerate(curves.items()):
        axes.bar(np.arange(1, 11) + (k - 0.5) * width, lift_by_decile(y, p), width, label=label)
    axes.axhline(1, color="grey", linestyle=":")
    axes.set(xlabel="decile by predicted probability (1: highest)", ylabel="lift",
             title="Lift by decile", xticks=range(1, 11))
    axes.legend()
    figure.savefig(directory / "lift.png", dpi=100, bbox_inches="tight")
    plt.close(figure)

    by_category = {label: auc_by_category(y, p, category) for label, p in curves.items()}
    names = sorted(by_category["per-driver"])
    figure, axes = plt.subplots(figsize=(6, 4))
    for k, (label, values) in enumerate(by_category.items()):
        axes.bar(np.arange(len(names)) + (k - 0.5) * width, [values[n] for n in names], width,
                 label=label)
    # From 0: a category scored worse than chance shows as a bar below the line, not as none.
    axes.axhline(0.5, color="grey", linestyle="--", linewidth=1, label="chance")
    axes.set(ylabel="ROC AUC", title="AUC per category", ylim=(0, 1),
             xticks=range(len(names)), xticklabels=names)
    axes.legend()
    figure.savefig(directory / "auc_by_category.png", dpi=100, bbox_inches="tight")
    plt.close(figure)

    report = {"per_driver": summary(y, evaluation.p),
              "global_only": summary(y, evaluation.p_global),
              "auc_by_category": by_category,
              "lift_by_decile": {k: lift_by_decile(y, p).tolist() for k, p in curves.items()}}
    # A figure that cannot be computed (an AUC with one class, an empty decile) is null: JSON
    # has no NaN, and strict readers refuse the bare `NaN` Python's json writes.
    (directory / "summary.json").write_text(json.dumps(_nan_to_none(report), indent=2) + "\n")
    return report


def _nan_to_none(value):
    if isinstance(value, dict):
        return {k: _nan_to_none(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_nan_to_none(v) for v in value]
    if isinstance(value, float) and value != value:
        return None
    return value
