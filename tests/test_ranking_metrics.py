"""Metrics and the warm-start split, with known answers."""

from __future__ import annotations

import numpy as np
import pytest

from ranking.evaluation import accuracy, calibration, lift_by_decile, log_loss, roc_auc
from ranking.training import warm_start_split


def test_auc_known_answers():
    assert roc_auc(np.array([0, 0, 1, 1]), np.array([0.1, 0.4, 0.35, 0.8])) == 0.75
    assert roc_auc(np.array([0, 1]), np.array([0.2, 0.9])) == 1.0
    assert np.isnan(roc_auc(np.array([1, 1]), np.array([0.2, 0.9])))


def test_log_loss_and_accuracy_known_answers():
    y, p = np.array([1, 0]), np.array([0.8, 0.4])
    assert log_loss(y, p) == pytest.approx(-(np.log(0.8) + np.log(0.6)) / 2)
    assert accuracy(y, p) == 1.0
    assert accuracy(np.array([1, 0, 1, 0]), np.array([0.9, 0.6, 0.2, 0.1])) == 0.5


def test_lift_by_decile_known_answer():
    y = np.array([1] * 10 + [0] * 90)
    p = np.linspace(1, 0, 100)
    lift = lift_by_decile(y, p)
    assert lift[0] == pytest.approx(10.0) and not lift[1:].any()


def test_calibration_bins():
    predicted, observed = calibration(np.array([0, 1, 1, 1]), np.array([0.05, 0.08, 0.95, 0.9]))
    assert predicted.tolist() == pytest.approx([0.065, 0.925])
    assert observed.tolist() == [0.5, 1.0]


def test_warm_start_takes_each_drivers_first_rows_in_order():
    groups = np.array(["a", "b", "a", "a", "b", "a", "a"])
    assert warm_start_split(groups, 0.5).tolist() == [True, True, True, False, False, False,
                                                      False]
    assert not warm_start_split(groups, 0.0).any()


@pytest.mark.parametrize("fraction, rows, warm", [(0.58, 50, 29), (0.29, 100, 29), (0.7, 10, 7),
                                                  (0.5, 7, 3)])
def test_warm_start_takes_floor_of_the_fraction_as_written(fraction, rows, warm):
    """floor(F · n) of the decimal F given: 0.58 · 50 is 29 (the floats' product 28.99…)."""
    assert warm_start_split(np.array(["a"] * rows), fraction).sum() == warm
