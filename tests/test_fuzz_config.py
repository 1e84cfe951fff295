"""dq-train's command line fuzzed from the schema (issue 11, point 2): every case either
validates or is refused in one line naming what was wrong and what is allowed, before
any training, leaving no run directory; never a traceback. The cases and the check are
in tests/fuzz_cases.py; the CLI cases (exit 2, one stderr line) are in the slow test."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fuzz_cases import GROUPS, Case, Composer, Tally, cases, check, choice_keys, run_keys

# The default suite's group choices: data that builds in milliseconds once cached, each
# model, each regularizer, and the contradictions (fairness without groups, a mask target
# on data without masks, LoRA on a model it cannot adapt). Composing a set of choices costs
# ~0.3 s here, so the default suite keeps to these few; the slow test draws them freely.
FAST_GROUPS = [
    ("dataset=digits", "model=cnn", "optimizer=adam", "regularizer=[]", "logger=[jsonl]"),
    ("dataset=adult", "model=mlp", "optimizer=sgd", "regularizer=[fairness]", "logger=[jsonl]"),
    ("dataset=adult", "model=mlp", "optimizer=adam", "regularizer=[attribution]", "logger=[jsonl,tensorboard]"),
    ("dataset=digits", "model=mlp", "optimizer=adam", "regularizer=[fairness,adversarial]", "logger=[jsonl]"),
    ("dataset=gunpoint", "model=rnn", "optimizer=adam", "regularizer=[adversarial,robust_fairness]", "logger=[jsonl]"),
    ("dataset=digits", "model=attention", "optimizer=sgd", "regularizer=[lora]", "logger=[tensorboard]"),
    (
        "dataset=gunpoint",
        "model=cnn",
        "optimizer=sgd",
        "regularizer=[robust_fairness]",
        "logger=[jsonl]",
        "scheduler=step",
    ),
]
FAST_MUTATIONS = ("value", "value", "value", "value", "unknown", "delete")
PROFILE = settings(deadline=None, derandomize=True, suppress_health_check=list(HealthCheck), database=None)

COMPOSER = Composer()


def test_the_schema_walk_finds_every_group_and_key() -> None:
    paths = {key.path: key for key in run_keys()}
    assert paths["trainer.early_stopping.patience"].kind == "int"
    assert paths["trainer.nonfinite"].choices == ("stop", "skip_batch")
    assert paths["eval.robust.eps"].kind == "list[float]" and paths["seed"].kind == "int"
    assert {key.path for key in choice_keys("dataset", "adult")} >= {"dataset.sensitive", "dataset.limit"}
    assert "regularizer.fairness.criterion" in {key.path for key in choice_keys("regularizer", "fairness")}
    assert {"dataset", "model", "regularizer", "logger", "experiment", "paper"} <= set(GROUPS)
    assert len(paths) > 50


FAST_TALLY = Tally()


@settings(PROFILE, max_examples=300)
@given(case=cases(st.sampled_from(FAST_GROUPS), FAST_MUTATIONS))
def test_fuzzed_command_lines_validate_or_are_refused_in_one_line(case: Case) -> None:
    check(case, COMPOSER, FAST_TALLY)


def test_the_fuzz_run_refused_and_validated_some() -> None:
    """Runs after the fuzz test in the same process (pytest keeps a module's order; under
    xdist, a module's tests may land apart, and then this one fuzzes its own cases)."""
    if FAST_TALLY.tried < 300:
        for case in EXAMPLES:
            check(case, COMPOSER, FAST_TALLY)
    print(FAST_TALLY.summary())
    assert FAST_TALLY.refused > 0


EXAMPLES = [
    Case(("dataset=digits", "regularizer=[fairness]"), (), {"fairness", "digits"}),
]
