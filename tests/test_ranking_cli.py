"""`offers ranking train` and `offers ranking evaluate` on a slice of the coupon survey."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
from click.testing import CliRunner

from api.cli import main
from offers.geo_index import CATEGORIES
from ranking.datasets import read_coupon_survey, read_log, write_log
from ranking.evaluation import Evaluation, evaluate, write_report
from ranking.training import RankingModel

from .conftest import SHARED_DATA

SURVEY = SHARED_DATA / "coupon" / "coupons_train.csv"
SLICE_ROWS = 400   # about 20 drivers


@pytest.fixture(scope="module")
def survey_slice(tmp_path_factory):
    if not SURVEY.exists():
        pytest.skip(f"coupon survey not available at {SURVEY}")
    path = tmp_path_factory.mktemp("survey") / "slice.csv"
    with open(SURVEY, newline="") as source:
        lines = [next(source) for _ in range(SLICE_ROWS + 1)]
    path.write_text("".join(lines))
    return path


@pytest.fixture(scope="module")
def model_dir(survey_slice, tmp_path_factory):
    out = tmp_path_factory.mktemp("model")
    result = CliRunner().invoke(main, ["ranking", "train", "--data", str(survey_slice),
                                       "--format", "coupon-survey", "--out", str(out)])
    assert result.exit_code == 0, result.output
    return out


def test_train_writes_a_model_directory(model_dir):
    assert (model_dir / "global.skops").exists()
    meta = json.loads((model_dir / "model.json").read_text())
    assert meta["info"]["rows"] == SLICE_ROWS
    n_terms = len(meta["driver_terms"])
    assert np.asarray(meta["prior_covariance"]).shape == (n_terms, n_terms)


def test_evaluate_writes_one_prediction_per_scored_row(model_dir, survey_slice, tmp_path):
    predictions = tmp_path / "p.csv"
    result = CliRunner().invoke(main, [
        "ranking", "evaluate", "--model", str(model_dir), "--data", str(survey_slice),
        "--format", "coupon-survey", "--warm-start-fraction", "0.5",
        "--predictions", str(predictions), "--report", str(tmp_path / "report")])
    assert result.exit_code == 0, result.output
    assert "AUC" in result.output and "log loss" in result.output
    with open(predictions, newline="") as file:
        rows = list(csv.DictReader(file))
    data = read_coupon_survey(survey_slice)
    per_driver = {d: (data.driver_id == d).sum() for d in set(data.driver_id)}
    assert len(rows) == sum(n - n // 2 for n in per_driver.values())
    assert list(rows[0]) == ["row", "driver_id", "y", "p"]
    for row in rows:   # each scored row is one of its driver's later rows, with its label
        i = int(row["row"])
        assert data.driver_id[i] == row["driver_id"] and int(row["y"]) == data.y[i]
        assert 0 < float(row["p"]) < 1
    for name in ("calibration.png", "lift.png", "auc_by_category.png", "summary.json"):
        assert (tmp_path / "report" / name).stat().st_size > 0



def test_a_report_figure_that_cannot_be_computed_is_null_in_strict_json(survey_slice,
                                                                         tmp_path):
    """Every row of a category taken (no AUC for it): null, not the bare NaN that strict JSON
    readers refuse."""
    data = read_coupon_survey(survey_slice)
    rows = np.arange(len(data))
    y = np.where(data.raw["category"] == data.raw["category"][0], 1, data.y)
    p = np.linspace(0.1, 0.9, len(data))
    report = write_report(tmp_path, data, Evaluation(rows, y, p, p))
    first = CATEGORIES[data.raw["category"][0]]
    assert np.isnan(report["auc_by_category"]["per-driver"][first])
    summary = json.loads((tmp_path / "summary.json").read_text(),
                         parse_constant=lambda name: pytest.fail(f"{name} in summary.json"))
    assert summary["auc_by_category"]["per-driver"][first] is None


def test_evaluate_reads_the_log_format_alike(model_dir, survey_slice, tmp_path):
    write_log(read_coupon_survey(survey_slice), tmp_path / "log.csv")
    outputs = []
    for path, data_format in ((survey_slice, "coupon-survey"), (tmp_path / "log.csv", "log")):
        predictions = tmp_path / f"{data_format}.csv"
        result = CliRunner().invoke(main, [
            "ranking", "evaluate", "--model", str(model_dir), "--data", str(path),
            "--format", data_format, "--predictions", str(predictions)])
        assert result.exit_code == 0, result.output
        outputs.append(predictions.read_text())
    assert outputs[0] == outputs[1]


def test_an_exports_rows_without_feedback_teach_nothing_in_evaluate(model_dir, survey_slice,
                                                                    tmp_path):
    """An export's `outcome` column: an offer the driver said nothing about (`none`) is no
    feedback, which POST /v1/feedback never learns from, and neither does the warm start."""
    data = read_coupon_survey(survey_slice)
    write_log(data, tmp_path / "log.csv")
    header, *lines = (tmp_path / "log.csv").read_text().splitlines()
    model = RankingModel.load(model_dir)
    found = {}
    for said in ("answered", "silent"):
        outcomes = (["accept" if y else "dismiss" for y in data.y] if said == "answered"
                    else ["none"] * len(data))
        path = tmp_path / f"{said}.csv"
        path.write_text("\n".join([f"{header},outcome",
                                   *(f"{line},{o}" for line, o in zip(lines, outcomes,
                                                                      strict=True))]) + "\n")
        found[said] = evaluate(model, read_log(path), 0.5)
    plain = evaluate(model, read_log(tmp_path / "log.csv"), 0.5)
    np.testing.assert_array_equal(found["answered"].p, plain.p)
    np.testing.assert_allclose(found["silent"].p, found["silent"].p_global, rtol=1e-12)
    assert not np.allclose(plain.p, plain.p_global)


def test_train_warns_when_the_per_driver_prior_runs_away(model_dir, tmp_path):
    """57 drivers of the survey: the prior's EM runs to its variance cap, and per-driver
    learning then scores the next 600 rows worse than the global model (AUC 0.64 against
    0.79); 20 drivers (`model_dir`) or 113 do not."""
    with open(SURVEY, newline="") as source:
        lines = [next(source) for _ in range(1201)]
    (tmp_path / "first.csv").write_text("".join(lines))
    result = CliRunner().invoke(main, ["ranking", "train", "--data", str(tmp_path / "first.csv"),
                                       "--format", "coupon-survey", "--out", str(tmp_path / "m")])
    assert result.exit_code == 0, result.output
    assert "warning: the per-driver prior did not settle: 14 of 14" in result.stderr
    assert "warning" in json.loads((tmp_path / "m" / "model.json").read_text())["info"]
    assert "warning" not in json.loads((model_dir / "model.json").read_text())["info"]
