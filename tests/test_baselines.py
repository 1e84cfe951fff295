"""dq-baselines: fairlearn's baselines on a run's own split, the numbers fairlearn gives
when called directly, baselines.json beside the run's own metrics, and its refusals."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from fairlearn.metrics import demographic_parity_difference, equalized_odds_difference
from fairlearn.postprocessing import ThresholdOptimizer
from fairlearn.reductions import DemographicParity, ExponentiatedGradient
from sklearn.linear_model import LogisticRegression

import dq
from dq.baselines.command import main
from dq.baselines.fit import ModelScores, blas_threads
from dq.rundir.layout import BASELINES_JSON

# fairlearn 0.15's reductions set Series entries with .at, which pandas deprecates.
pytestmark = pytest.mark.filterwarnings("ignore:Setting a value on a Series via .at")

ADULT = ("dataset=adult", "model=mlp", "explain.enabled=false", "dataset.limit=400", "regularizer=[fairness]")


@pytest.fixture(scope="module")
def adult_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A completed adult run (400 examples per split, DP penalty) and its baselines.json
    (dq-baselines with 20 resamples)."""
    from conftest import compose_config

    run_dir = tmp_path_factory.mktemp("baselines") / "run"
    dq.train(compose_config(ADULT), run_dir=run_dir)
    main([str(run_dir), "--bootstrap", "20"])
    return run_dir


def _written(run_dir: Path) -> dict:
    return json.loads((run_dir / BASELINES_JSON).read_text())


def _scores(y: np.ndarray, pred: np.ndarray, group: np.ndarray) -> dict[str, float]:
    """The numbers as fairlearn computes them directly (binary task: class 1 is positive)."""
    return {
        "test/accuracy": float(np.mean(pred == y)),
        "test/dp_diff": float(demographic_parity_difference(y, pred, sensitive_features=group)),
        "test/eo_diff": float(equalized_odds_difference(y, pred, sensitive_features=group)),
    }


def test_baselines_match_fairlearn_called_directly(adult_run: Path) -> None:
    written = _written(adult_run)
    run = dq.load_run(adult_run)
    x, y, g = (run.splits.train.x.numpy(), run.splits.train.y.numpy(), run.splits.train.group.numpy())
    x_test, y_test, g_test = run.splits.test.x.numpy(), run.splits.test.y.numpy(), run.splits.test.group.numpy()
    assert written["constraint"] == "demographic_parity" and written["seed"] == 0

    with blas_threads(1):  # as dq-baselines runs them (trainer.num_threads=1): same numbers, 5-10x faster here
        logistic = LogisticRegression(max_iter=1000, random_state=0).fit(x, y)
        mitigator = ExponentiatedGradient(
            LogisticRegression(max_iter=1000, random_state=0), constraints=DemographicParity(), eps=0.01, max_iter=50
        ).fit(x, y, sensitive_features=g)
    scorer = ModelScores(run.model, torch.device("cpu"))
    with torch.no_grad():
        expected_proba = torch.softmax(run.model(torch.as_tensor(x_test)).double(), dim=1).numpy()
    assert np.allclose(scorer.predict_proba(x_test), expected_proba, atol=1e-6)
    thresholds = ThresholdOptimizer(
        estimator=scorer, constraints="demographic_parity", prefit=True, predict_method="predict_proba"
    ).fit(x, y, sensitive_features=g)
    direct = {
        "logistic_regression": logistic.predict(x_test),
        "exponentiated_gradient": mitigator.predict(x_test, random_state=0),
        "threshold_optimizer": thresholds.predict(x_test, sensitive_features=g_test, random_state=0),
        "run": run.model(torch.as_tensor(x_test)).argmax(dim=1).numpy(),
    }
    for name, pred in direct.items():
        got = written["rows"][name]["metrics"]
        for key, value in _scores(y_test, np.asarray(pred), g_test).items():
            assert got[key] == pytest.approx(value, abs=1e-12), (name, key)
            assert got[f"{key}/ci_low"] <= got[f"{key}/ci_high"], (name, key)
    # The run's own row is its metrics.json (recomputed from best.pt, not copied).
    metrics = json.loads((adult_run / "metrics.json").read_text())
    assert written["rows"]["run"]["metrics"]["test/dp_diff"] == pytest.approx(metrics["test/dp_diff"], abs=1e-12)
    # The unconstrained fit has the larger gap: the constraint did something on these 400 rows.
    rows = written["rows"]
    assert (
        rows["exponentiated_gradient"]["metrics"]["test/dp_diff"]
        < rows["logistic_regression"]["metrics"]["test/dp_diff"]
    )


def test_dq_tables_logistic_regression_row_is_the_same_fit(adult_run: Path) -> None:
    from conftest import compose_config
    from dq.paper.baselines import logistic_regression

    row = logistic_regression(compose_config(ADULT), seed=0)
    got = _written(adult_run)["rows"]["logistic_regression"]["metrics"]
    for key in (
        "test/accuracy",
        "test/dp_diff",
        "test/eo_diff",
        "test/group_accuracy/Male",
        "test/worst_group_accuracy",
    ):
        assert row[key] == got[key]
    assert row["test/worst_group_accuracy"] == min(row["test/group_accuracy/Male"], row["test/group_accuracy/Female"])
    assert "test/dp_diff/ci_low" not in row  # dq-table's rows keep their keys


def _refused(args: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    with pytest.raises(SystemExit) as exit_info:
        main(args)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    return err


def test_refusals_say_one_line_and_write_nothing(adult_run: Path, tmp_path: Path, capsys, make_cfg) -> None:
    image = tmp_path / "digits"
    dq.train(make_cfg("dataset=digits", "model=mlp", "explain.enabled=false"), run_dir=image)
    assert "binary tabular data with sensitive groups; dataset digits has image data and no sensitive groups" in (
        _refused([str(image)], capsys)
    )
    assert not (image / BASELINES_JSON).exists()

    unfinished = tmp_path / "unfinished"
    shutil.copytree(adult_run, unfinished)
    (unfinished / BASELINES_JSON).unlink()
    info = json.loads((unfinished / "run.json").read_text())
    (unfinished / "run.json").write_text(json.dumps({**info, "status": "running"}))
    assert "has status 'running'; only completed runs load" in _refused([str(unfinished)], capsys)
    assert not (unfinished / BASELINES_JSON).exists()

    assert "is not a dq run directory" in _refused([str(tmp_path)], capsys)
    assert "--bootstrap must be >= 0" in _refused([str(adult_run), "--bootstrap", "-1"], capsys)
    assert "usage: dq-baselines RUN_DIR" in _refused([], capsys)


@pytest.mark.slow
def test_on_full_adult_the_penalty_and_both_fairlearn_methods_shrink_the_gap_beyond_noise(tmp_path, make_cfg) -> None:
    """Evidence (issue 13): fair_adult at weight 1, seed 0, 200 resamples. Measured: the run's
    DP gap 0.016 [0.005, 0.029] against the logistic regression's 0.179 [0.168, 0.191];
    ExponentiatedGradient 0.010 [0.001, 0.024], ThresholdOptimizer 0.002 [0.000, 0.016]."""
    base = ("+experiment=fair_adult", "trainer.progress=false", "trainer.device=cpu", "explain.enabled=false")
    dq.train(
        make_cfg(*base, "regularizer.fairness.weight=1", "eval.bootstrap=200", fast=False), run_dir=tmp_path / "run"
    )
    main([str(tmp_path / "run")])
    rows = {name: row["metrics"] for name, row in _written(tmp_path / "run")["rows"].items()}
    unconstrained = rows["logistic_regression"]["test/dp_diff/ci_low"]
    for name in ("run", "exponentiated_gradient", "threshold_optimizer"):
        assert rows[name]["test/dp_diff/ci_high"] < unconstrained, name  # intervals apart: not noise
        assert rows[name]["test/accuracy"] >= 0.80, name  # well above the 75.2% majority rate
