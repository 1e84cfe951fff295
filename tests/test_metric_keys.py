"""dq.metric_keys: the builders spell docs/design.md's key families, ``parse`` reads every
family back, and the reports read what the metrics producers write."""

from __future__ import annotations

import torch

from dq import metric_keys as keys
from dq.metrics import split_metrics
from dq.report.breakdown import breakdowns, explain_metrics, fairness_gaps, grouped, robust_by_eps


def test_builders_spell_each_family() -> None:
    assert keys.test(keys.ACCURACY) == "test/accuracy"
    assert keys.val(keys.DP_DIFF) == "val/dp_diff"
    assert keys.train(keys.LOSS) == "train/loss"
    assert keys.metric("val", keys.ECE) == "val/ece"
    assert keys.group_accuracy("T-shirt/top") == "test/group_accuracy/T-shirt-top"  # one key segment
    assert keys.group_accuracy("Male", keys.VAL) == "val/group_accuracy/Male"
    assert keys.class_accuracy("cat") == "test/class_accuracy/cat"
    assert keys.worst_accuracy(keys.CLASS) == "test/worst_class_accuracy"
    assert keys.worst_accuracy(keys.GROUP, keys.VAL) == "val/worst_group_accuracy"
    tag = keys.eps_tag(0.1)
    assert tag == "0.1" and keys.eps_tag(8.0) == "8" and keys.eps_tag(1e-5) == "1e-05"
    assert keys.robust_accuracy(tag) == "test/robust_accuracy@0.1"
    assert keys.robust_accuracy(tag, keys.AUTOATTACK) == "test/autoattack_accuracy@0.1"
    assert keys.robust_accuracy(tag, keys.APGD) == "test/apgd_accuracy@0.1"
    assert keys.attack_seconds(keys.APGD) == "time/apgd_s"
    assert keys.attack_seconds_per_example(keys.AUTOATTACK) == "time/autoattack_per_example_s"
    assert keys.group_robust_accuracy("Male", tag) == "test/group_robust_accuracy/Male@0.1"
    assert keys.worst_group_robust_accuracy(tag) == "test/worst_group_robust_accuracy@0.1"
    assert keys.robust_gap(keys.EO_DIFF, tag) == "test/robust_eo_diff@0.1"
    assert keys.ci_low("test/dp_diff") == "test/dp_diff/ci_low"
    assert keys.ci_high("test/dp_diff") == "test/dp_diff/ci_high"
    assert keys.explain("ig", "infidelity") == "explain/ig/infidelity"
    assert keys.explain_seconds_per_sample("ig") == "time/explain/ig_per_sample_s"
    assert keys.compress("pred_change") == "compress/pred_change"
    assert keys.compress_original("test/accuracy") == "compress/original/test/accuracy"
    assert keys.compress_delta("test/accuracy") == "compress/delta/test/accuracy"
    assert keys.params("total") == "params/total"
    assert keys.time("train_s") == "time/train_s"


def test_parse_reads_a_split_key_into_its_parts() -> None:
    parsed = keys.parse("test/group_robust_accuracy/Male@0.1/ci_high")
    assert parsed == keys.MetricKey(
        "test",
        "group_robust_accuracy",
        member="Male",
        eps="0.1",
        bound=keys.CI_HIGH,
        scope=keys.GROUP,
        attack=keys.ROBUST,
        measure=keys.ACCURACY,
    )
    worst = keys.parse("test/worst_group_autoattack_accuracy@8")
    assert (worst.scope, worst.attack, worst.measure, worst.eps) == ("worst_group", keys.AUTOATTACK, keys.ACCURACY, "8")
    cheap = keys.parse("test/group_apgd_accuracy/Male@0.1")
    assert (cheap.scope, cheap.attack, cheap.measure, cheap.member) == (keys.GROUP, keys.APGD, keys.ACCURACY, "Male")
    gap = keys.parse("test/robust_dp_diff@0.1")
    assert (gap.scope, gap.attack, gap.measure, gap.member) == (None, keys.ROBUST, keys.DP_DIFF, None)
    clean = keys.parse("test/dp_diff/ci_low")  # a bound is never taken for a group
    assert (clean.metric, clean.member, clean.bound) == (keys.DP_DIFF, None, keys.CI_LOW)
    other = keys.parse("test/cf_flip_rate")
    assert (other.metric, other.measure, other.scope, other.attack) == ("cf_flip_rate", "cf_flip_rate", None, None)
    assert keys.parse("val/robust_accuracy").attack == keys.ROBUST


def test_parse_keeps_the_rest_of_other_families_verbatim() -> None:
    assert keys.parse("explain/ig/infidelity") == keys.MetricKey("explain", "infidelity", method="ig")
    assert keys.parse("explain/ig").method is None  # no metric: not a method's key
    assert keys.parse("time/explain/ig_per_sample_s") == keys.MetricKey("time", "explain/ig_per_sample_s")
    assert keys.parse("compress/original/test/accuracy") == keys.MetricKey("compress", "original/test/accuracy")
    assert keys.parse("epoch") == keys.MetricKey("epoch", "")


def test_robust_eps_group_of_and_interval_of_accept_only_their_own_keys() -> None:
    assert keys.robust_eps("test/robust_accuracy@0.1") == "0.1"
    for key in ("test/robust_accuracy@0.1/ci_low", "test/autoattack_accuracy@0.1", "test/robust_dp_diff@0.1"):
        assert keys.robust_eps(key) is None
    assert keys.group_of("test/group_accuracy/Male") == "Male"
    for key in ("test/group_accuracy/Male/ci_low", "test/group_robust_accuracy/Male@0.1", "val/group_accuracy/Male"):
        assert keys.group_of(key) is None
    assert keys.interval_of("test/dp_diff/ci_low") == "test/dp_diff"
    assert keys.interval_of("test/dp_diff") is None
    assert keys.is_interval("test/accuracy/ci_high") and not keys.is_interval("test/accuracy")


def test_eps_order_sorts_radii_by_value_and_words_last() -> None:
    assert sorted(["8", "0.5", "x", "1e-05", "16"], key=keys.eps_order) == ["1e-05", "0.5", "8", "16", "x"]


def test_reports_read_back_what_the_metrics_producer_writes() -> None:
    logits = torch.tensor([[2.0, 0.0], [0.0, 2.0], [2.0, 0.0], [2.0, 0.0], [0.0, 2.0], [0.0, 2.0]])
    y = torch.tensor([0, 1, 1, 0, 1, 0])
    group = torch.tensor([0, 0, 0, 1, 1, 1])
    written = split_metrics(logits, y, keys.TEST, group, ["F/x", "M"], n_boot=10)
    tag = keys.eps_tag(0.25)
    written[keys.robust_accuracy(tag)] = 0.5
    written[keys.group_robust_accuracy("M", tag)] = 0.25
    written[keys.robust_gap(keys.DP_DIFF, tag)] = 0.1
    written[keys.explain("ig", "infidelity")] = 0.01
    written[keys.time("train_s")] = 1.0

    (part,) = breakdowns(written)
    assert part.kind == keys.GROUP
    assert part.clean == {"F-x": written["test/group_accuracy/F-x"], "M": written["test/group_accuracy/M"]}
    assert part.robust == {"0.25": {"M": 0.25}}
    assert robust_by_eps(written) == {"0.25": 0.5}
    assert set(fairness_gaps(written)) == {"test/dp_diff", "test/eo_diff", "test/robust_dp_diff@0.25"}
    assert explain_metrics(written) == {"ig": {"infidelity": 0.01}}
    assert list(grouped(written)) == ["test", "explain", "time"]
    assert keys.ci_low("test/dp_diff") in written  # the intervals under the keys the readers skip
