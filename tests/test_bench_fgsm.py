"""scripts/bench_fgsm.py runs the methods its rows name, scores what a run keeps, and
summarises seeds as its table says."""

from __future__ import annotations

import pytest

from dq.data_records import DatasetMeta
from dq.objectives.adversarial import FastFGSM, MadryPGD, NoisyFGSM
from dq.objectives.overfitting_guard import GuardedTerm
from dq.objectives.registry import build_objective
from dq.spec import to_spec
from script_module import load_script

bench = load_script("bench_fgsm.py")
DIGITS = DatasetMeta(
    name="digits",
    modality="image",
    input_shape=(1, 8, 8),
    num_classes=10,
    class_names=tuple(str(i) for i in range(10)),
    valid_range=(0.0, 1.0),
)


def test_each_row_builds_the_term_its_name_says(make_cfg) -> None:
    expected = {"fgsm_rs": (True, FastFGSM), "fgsm_rs, no guard": (False, FastFGSM)}
    expected |= {"n_fgsm": (True, NoisyFGSM), "pgd-10": (False, MadryPGD)}
    for name, (guarded, kind) in expected.items():
        spec = to_spec(make_cfg(*bench.COMMON, "dataset=digits", *bench.METHODS[name], fast=False))
        (term,) = build_objective(spec.regularizer, DIGITS).terms
        assert isinstance(term, GuardedTerm) == guarded, name
        assert type(term.term if guarded else term) is kind, name
        assert term.attack.steps == (10 if name == "pgd-10" else 1), name
    clean = to_spec(make_cfg(*bench.COMMON, "dataset=digits", *bench.METHODS["clean"], fast=False))
    assert build_objective(clean.regularizer, DIGITS).terms == []


def test_a_robustness_run_scores_the_kept_and_the_last_epoch() -> None:
    """One epoch: the kept epoch is the last, so both scores are the same PGD-20 accuracy."""
    base = [*bench.COMMON, "dataset=digits", "dataset.limit=100", "eval.robust.limit=50"]
    bench.register_schemas()
    out = bench.robustness(base, ["n_fgsm"], epochs=1, seed=1)
    ((epoch, selected, last),) = out.values()
    assert epoch == 1 and selected == last and 0.0 <= selected <= 1.0
    assert selected * 50 == pytest.approx(round(selected * 50), abs=1e-4)  # a count of the 50 attacked


def test_mean_std_is_in_percent_over_the_seeds() -> None:
    assert bench.mean_std([0.5, 0.6]) == "55.0 ± 7.1"
    assert bench.mean_std([0.5]) == "50.0 ± 0.0"


def test_a_run_follows_the_scheduler_it_is_given() -> None:
    """scheduler=cyclic reaches fit: the one-cycle learning rate rises then falls (the bench
    once built no scheduler, so every schedule ran at the constant peak)."""
    base = [*bench.COMMON, "dataset=digits", "dataset.limit=100", *bench.METHODS["clean"], "trainer.epochs=3"]
    bench.register_schemas()
    _, constant, *_ = bench.train(base)
    _, cyclic, *_ = bench.train([*base, "scheduler=cyclic"])
    assert len({epoch["lr"] for epoch in constant.history}) == 1
    rates = [epoch["lr"] for epoch in cyclic.history]
    assert rates[1] > rates[0] and rates[1] > rates[2]
