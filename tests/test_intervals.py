"""Bootstrap intervals of group metrics (dq.metrics.intervals): fairlearn's own intervals
where fairlearn can express the statistic, dq's point estimates at their centre, and the
keys a run writes."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from fairlearn.metrics import (
    MetricFrame,
    false_positive_rate,
    selection_rate,
    true_positive_rate,
)
from sklearn.metrics import accuracy_score

from dq import data
from dq.console import metrics_table
from dq.data.registry import dataset_config
from dq.data_records import DatasetMeta
from dq.metrics import split_metrics
from dq.metrics.fairness import fairness_gaps, group_accuracy
from dq.metrics.intervals import CI_QUANTILES, fairlearn_resamples, group_intervals, group_rates, rate_names
from dq.metrics.robustness import robust_intervals


def _predictions(n: int, num_classes: int, num_groups: int, seed: int) -> tuple[np.ndarray, ...]:
    """Labels, predictions right 80% of the time with a group-dependent bias, and groups."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, num_classes, n)
    group = rng.integers(0, num_groups, n)
    noise = rng.integers(0, num_classes, n)
    pred = np.where(rng.random(n) < 0.8 - 0.1 * group, y, noise)
    return y, pred, group


@pytest.fixture(scope="module")
def adult_logistic() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Real predictions with a real gap: a logistic regression on adult (sex), 3000
    examples per split; its test DP difference is about 0.2."""
    from sklearn.linear_model import LogisticRegression

    splits = data.build(dataset_config("adult", limit=3000), seed=0)
    model = LogisticRegression(max_iter=500).fit(splits.train.x.numpy(), splits.train.y.numpy())
    return splits.test.y.numpy(), model.predict(splits.test.x.numpy()), splits.test.group.numpy()


def test_intervals_are_fairlearns_own_where_fairlearn_expresses_the_statistic() -> None:
    """Same data, same n_boot and random_state: a plain fairlearn MetricFrame gives exactly
    the group accuracy, overall and worst-group intervals, and (binary, class 1) the DP interval."""
    y, pred, group = _predictions(200, 2, 3, seed=1)
    ours = group_intervals(y, pred, group, ["a", "b", "c"], 2, n_boot=20, seed=7).estimates
    common = {"y_true": y, "y_pred": pred, "sensitive_features": group, "n_boot": 20, "random_state": 7}
    accuracy = MetricFrame(metrics=accuracy_score, ci_quantiles=list(CI_QUANTILES), **common)
    low, high = accuracy.by_group_ci
    for code, name in enumerate("abc"):
        estimate = ours[f"group_accuracy/{name}"]
        assert (estimate.low, estimate.high) == pytest.approx((low[code], high[code]), abs=1e-12)
    assert (ours["accuracy"].low, ours["accuracy"].high) == pytest.approx(tuple(accuracy.overall_ci), abs=1e-12)
    worst = ours["worst_group_accuracy"]
    assert (worst.low, worst.high) == pytest.approx(tuple(accuracy.group_min_ci()), abs=1e-12)
    selection = MetricFrame(metrics=selection_rate, ci_quantiles=list(CI_QUANTILES), **common)
    dp = ours["dp_diff"]
    assert (dp.low, dp.high) == pytest.approx(tuple(selection.difference_ci()), abs=1e-12)


@pytest.mark.parametrize("num_classes", [2, 3])
def test_point_estimates_are_dqs_group_metrics(num_classes: int) -> None:
    """The frame's statistics are fairness_gaps' and group_accuracy's, also for a group
    that never holds some class (its TPR is 0, as fairlearn defines it)."""
    y, pred, group = _predictions(300, num_classes, 3, seed=num_classes)
    y[group == 2] = 0  # group 2 has no positives of any class but 0
    estimates = group_intervals(y, pred, group, ["a", "b", "c"], num_classes, n_boot=5, seed=0).estimates
    for key, value in fairness_gaps(y, pred, group, num_classes).items():
        assert estimates[key].value == pytest.approx(value, abs=1e-12)
    for name, value in group_accuracy(y, pred, group, ["a", "b", "c"]).items():
        assert estimates[f"group_accuracy/{name}"].value == pytest.approx(value, abs=1e-12)


def test_rates_are_fairlearns_definitions() -> None:
    """Each group's rates from the confusion counts equal fairlearn's, also where a group has
    no positives of a class (TPR 0) or no negatives (FPR 0), and NaN for a group without rows."""
    y, pred, group = _predictions(200, 3, 3, seed=3)
    y[group == 1] = 1  # group 1: no negatives of class 1, no positives of classes 0 and 2
    counts = np.zeros((4, 3, 3), dtype=np.int64)  # group 3 has no rows
    np.add.at(counts, (group, y, pred), 1)
    rates = group_rates(counts, 3)
    names = rate_names(3)
    assert np.isnan(rates[3]).all()
    for g in range(3):
        y_g, pred_g = y[group == g], pred[group == g]
        expected = {"accuracy": accuracy_score(y_g, pred_g)}
        for cls in range(3):
            binary = (y_g == cls).astype(int), (pred_g == cls).astype(int)
            expected[f"selection/{cls}"] = selection_rate(*binary)
            expected[f"tpr/{cls}"] = true_positive_rate(*binary)
            expected[f"fpr/{cls}"] = false_positive_rate(*binary)
        assert dict(zip(names, rates[g], strict=True)) == pytest.approx(expected, abs=1e-12)
    assert rates[1, names.index("fpr/1")] == 0.0 and rates[1, names.index("tpr/0")] == 0.0


def test_resamples_are_fairlearns_draw_in_chunks(monkeypatch) -> None:
    """The row indices are those pandas draws for fairlearn, whatever the chunk size."""
    import pandas as pd

    frame = pd.DataFrame({"row": np.arange(50)})
    seeds = np.random.default_rng(3).integers(0, np.iinfo(np.uint32).max, size=7, dtype=np.uint32)
    theirs = np.stack([frame.sample(frac=1, replace=True, random_state=s)["row"].to_numpy() for s in seeds])
    assert np.array_equal(np.concatenate(list(fairlearn_resamples(50, 7, 3))), theirs)
    monkeypatch.setattr("dq.metrics.intervals.CHUNK_ROWS", 120)  # two resamples of 50 rows per chunk
    chunks = list(fairlearn_resamples(50, 7, 3))
    assert [len(c) for c in chunks] == [2, 2, 2, 1] and np.array_equal(np.concatenate(chunks), theirs)


def test_intervals_on_adult_contain_the_estimate_and_repeat_with_the_seed(adult_logistic) -> None:
    y, pred, group = adult_logistic
    first = group_intervals(y, pred, group, ["Female", "Male"], 2, n_boot=60, seed=0).estimates
    again = group_intervals(y, pred, group, ["Female", "Male"], 2, n_boot=60, seed=0).estimates
    other = group_intervals(y, pred, group, ["Female", "Male"], 2, n_boot=60, seed=1).estimates
    assert first["dp_diff"].value > 0.1  # a real gap, not a degenerate 0 ± 0
    for name, estimate in first.items():
        assert estimate.low <= estimate.value <= estimate.high, name
        assert estimate.high - estimate.low > 0, name
        assert (again[name].low, again[name].high) == (estimate.low, estimate.high)
    assert any((other[n].low, other[n].high) != (e.low, e.high) for n, e in first.items())


def test_split_metrics_writes_ci_keys_only_with_a_bootstrap(adult_logistic) -> None:
    y, pred, group = adult_logistic
    logits = torch.nn.functional.one_hot(torch.as_tensor(pred), 2).float()
    args = (logits, torch.as_tensor(y), "test", torch.as_tensor(group), ("Female", "Male"))
    plain = split_metrics(*args)
    assert not any(key.endswith(("/ci_low", "/ci_high")) for key in plain)
    with_ci = split_metrics(*args, n_boot=20, seed=0)
    for key in (
        "test/accuracy",
        "test/group_accuracy/Female",
        "test/group_accuracy/Male",
        "test/worst_group_accuracy",
        "test/dp_diff",
        "test/eo_diff",
    ):
        assert with_ci[f"{key}/ci_low"] <= with_ci[key] == plain[key] <= with_ci[f"{key}/ci_high"], key
    assert plain["test/worst_group_accuracy"] == min(
        plain["test/group_accuracy/Female"], plain["test/group_accuracy/Male"]
    )
    names = ("accuracy", "group_accuracy/Female", "group_accuracy/Male", "worst_group_accuracy", "dp_diff", "eo_diff")
    assert {k for k in with_ci if k.endswith("/ci_low")} == {f"test/{k}/ci_low" for k in names}


def test_robust_interval_keys_name_the_robust_metrics(adult_logistic) -> None:
    y, pred, group = adult_logistic
    meta = DatasetMeta(
        name="adult",
        modality="tabular",
        input_shape=(1,),
        num_classes=2,
        class_names=("<=50K", ">50K"),
        group_names=("Female", "Male"),
    )
    keys = robust_intervals(y, pred, group, meta, "0.1", n_boot=5, seed=0)
    bases = {key.rpartition("/")[0] for key in keys}
    assert bases == {
        "test/robust_accuracy@0.1",
        "test/group_robust_accuracy/Female@0.1",
        "test/group_robust_accuracy/Male@0.1",
        "test/worst_group_robust_accuracy@0.1",
        "test/robust_dp_diff@0.1",
        "test/robust_eo_diff@0.1",
    }
    assert robust_intervals(y, pred, group, meta, "0.1", n_boot=0, seed=0) == {}
    autoattack = robust_intervals(y, pred, group, meta, "0.1", n_boot=5, seed=0, attack="autoattack")
    assert {key.replace("autoattack", "robust") for key in autoattack} == set(keys)


def test_undefined_gaps_get_no_interval() -> None:
    y, pred, group = _predictions(50, 2, 1, seed=0)
    out = split_metrics(
        torch.nn.functional.one_hot(torch.as_tensor(pred), 2).float(),
        torch.as_tensor(y),
        "test",
        torch.as_tensor(group),
        ("only",),
        n_boot=5,
    )
    assert math.isnan(out["test/dp_diff"]) and "test/dp_diff/ci_low" not in out
    assert "test/group_accuracy/only/ci_low" in out


def test_console_shows_the_interval_in_the_metric_row() -> None:
    from rich.console import Console

    metrics = {"test/dp_diff": 0.0812, "test/dp_diff/ci_low": 0.079, "test/dp_diff/ci_high": 0.0833, "test/loss": 0.5}
    console = Console(width=100, record=True)
    console.print(metrics_table(metrics))
    text = console.export_text()
    assert "0.081 [0.079, 0.083]" in text
    assert "ci_low" not in text and "0.5000" in text


def test_a_run_writes_intervals_of_its_group_metrics(make_cfg, tmp_path) -> None:
    import dq

    cfg = make_cfg("dataset=adult", "model=mlp", "explain.enabled=false", "dataset.limit=300", "eval.bootstrap=20")
    returned = dq.train(cfg, run_dir=tmp_path / "run")
    written = json.loads((tmp_path / "run" / "metrics.json").read_text())
    for key in ("test/group_accuracy/Female", "test/group_accuracy/Male", "test/dp_diff", "test/eo_diff"):
        assert written[f"{key}/ci_low"] == returned[f"{key}/ci_low"] <= written[f"{key}/ci_high"]
        assert written[f"{key}/ci_low"] <= written[key] <= written[f"{key}/ci_high"]


def test_reports_leave_interval_bounds_out_of_default_columns_and_group_tables() -> None:
    from dq.metric_keys import CI_HIGH, group_of, parse
    from dq.report.breakdown import breakdowns
    from dq.report.summary import select_metrics

    keys = ["test/dp_diff", "test/dp_diff/ci_low", "test/dp_diff/ci_high", "test/accuracy"]
    assert select_metrics(keys, None) == ["test/dp_diff", "test/accuracy"]
    assert select_metrics(keys, ["test/dp_diff*"]) == keys[:1]  # the bounds only when asked by name
    assert select_metrics(keys, ["test/dp_diff/ci_*"]) == keys[1:3]
    metrics = {
        "test/group_accuracy/Male": 0.8,
        "test/group_accuracy/Male/ci_low": 0.7,
        "test/group_robust_accuracy/Male@0.1": 0.3,
        "test/group_robust_accuracy/Male@0.1/ci_high": 0.4,
    }
    (part,) = breakdowns(metrics)
    assert part.clean == {"Male": 0.8} and part.robust == {"0.1": {"Male": 0.3}}
    assert group_of("test/group_accuracy/Male/ci_low") is None  # the figures' groups
    bound = parse("test/group_robust_accuracy/Male@0.1/ci_high")
    assert bound.bound == CI_HIGH and (bound.member, bound.eps) == ("Male", "0.1")
