"""dq-train's command line fuzzed from the schema (issue 11, point 2): every case either
validates or is refused in one line naming what was wrong and what is allowed, before
any training, leaving no run directory; never a traceback. The cases and the check are
in tests/fuzz_cases.py. The default suite runs a few hundred cases on composition and
validation alone; the slow test runs thousands over every dataset, model and logger,
and a handful through the real dq-train (exit 2, one stderr line, no run directory)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from omegaconf import OmegaConf

from dq.cli import refusal
from dq.spec import compose
from fuzz_cases import (
    GROUPS,
    ArgvTally,
    Case,
    Composer,
    Tally,
    any_groups,
    cases,
    check,
    choice_keys,
    hydra_argvs,
    run_argv,
    run_keys,
)

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
FAST_CASES = 300
SLOW_CASES = int(os.environ.get("DQ_FUZZ_SLOW_CASES", "2000"))  # ~0.5-2 s a case: fewer for a quick look
ALL_LOGGERS = GROUPS["logger"]
PROFILE = settings(
    deadline=None, derandomize=True, database=None, suppress_health_check=list(HealthCheck), phases=["generate"]
)
COMPOSER = Composer()  # shared by this module's tests: a set of group choices is composed once


def test_the_schema_walk_finds_every_group_and_key() -> None:
    paths = {key.path: key for key in run_keys()}
    assert paths["trainer.early_stopping.patience"].kind == "int"
    assert paths["trainer.nonfinite"].choices == ("stop", "skip_batch")
    assert paths["eval.robust.eps"].kind == "list[float]" and paths["seed"].kind == "int"
    assert {key.path for key in choice_keys("dataset", "adult")} >= {"dataset.sensitive", "dataset.limit"}
    assert "regularizer.fairness.criterion" in {key.path for key in choice_keys("regularizer", "fairness")}
    assert {"dataset", "model", "regularizer", "logger", "experiment", "paper"} <= set(GROUPS)
    assert len(paths) == 48  # every key of the run-wide groups (a new key is fuzzed as soon as it exists)


def fuzz(strategy: st.SearchStrategy[Case], examples: int) -> Tally:
    tally = Tally()

    @settings(PROFILE, max_examples=examples)
    @given(case=strategy)
    def one(case: Case) -> None:
        check(case, COMPOSER, tally)

    started, cpu = time.perf_counter(), time.process_time()
    one()
    tally.wall_s, tally.cpu_s = time.perf_counter() - started, time.process_time() - cpu
    return tally


def test_fuzzed_command_lines_validate_or_are_refused_in_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    tally = fuzz(cases(st.sampled_from(FAST_GROUPS), FAST_MUTATIONS), FAST_CASES)
    with capsys.disabled():
        print(f"\nfuzz (default suite): {tally.summary()}")
    assert tally.tried >= FAST_CASES * 0.9  # hypothesis may stop early only when it runs out of new cases
    assert tally.refused > tally.tried / 2 and tally.validated >= 5


@pytest.mark.parametrize(
    ("groups", "keys", "refused"),
    [
        (("dataset=digits", "regularizer=[fairness]"), (), r"^regularizer fairness needs data with groups; "),
        (("dataset=adult", "model=mlp", "regularizer=[attribution]"), (), r"target=mask needs data with annotation"),
        (
            ("dataset=adult", "model=mlp", "regularizer=[attribution]"),
            ("regularizer.attribution.target=sensitive",),
            r"target=sensitive needs the sensitive attribute among the inputs: set dataset.include_sensitive=true",
        ),
        (("dataset=digits", "model=mlp", "regularizer=[robust_fairness]"), (), r"needs regularizer adversarial"),
        (("dataset=adult", "model=cnn"), (), r"^model cnn does not support tabular data .*; models for tabular"),
        (("dataset=adult", "model=mlp"), ("explain.baseline=blur",), r"blur does not apply to tabular .*allowed"),
        (("dataset=digits", "model=mlp"), ("experiment_name=../../elsewhere",), r"^experiment_name must be a folder"),
        (("dataset=digits", "model=mlp"), ("trainer.num_threads=2147483648",), r"num_threads must be in \[1, 512\]"),
        (("dataset=digits", "model=mlp"), ("optimizer.lr=inf",), r"^optimizer.lr must be a finite number, got inf$"),
        (("dataset=digits", "model=mlp"), ("seed=18446744073709551616",), r"^seed must be an integer within"),
        (("dataset=digits", "model=mlp"), ("eval.bootstrap='${oops}'",), r"^bad value for eval.bootstrap: .*oops"),
        (("dataset=[adult,digits]",), (), r"^dataset=\[adult,digits\] lists several choices but dataset takes one"),
        (("dataset=digits", "model=mlp"), ("=1",), r"^override '=1' has no key; write key=value"),
        (("dataset=digits", "model=mlp"), ("trainer.device=é",), r"^cannot parse override 'trainer.device=é'; "),
    ],
)
def test_contradictions_and_the_bugs_the_fuzzer_found_are_refused_in_one_line(
    groups: tuple[str, ...], keys: tuple[str, ...], refused: str
) -> None:
    import re

    names = {part for override in (*groups, *keys) for part in re.split(r"[=.\[\],]", override.lstrip("+~"))}
    line = check(Case(groups, ("explain.n_samples=2", *keys), names), COMPOSER, Tally())
    assert line is not None and re.search(refused, line), line


def test_the_fast_composer_agrees_with_hydras_compose() -> None:
    """The Composer's shortcut (groups composed once, keys applied by Hydra's own override
    code) gives what a whole compose gives: the same config, or a refusal for both."""
    examples = [
        Case(FAST_GROUPS[1], ("trainer.epochs=3", "+trainer.epochz=1")),
        Case(FAST_GROUPS[1], ("optimizer.lr=0.5", "~trainer.early_stopping", "++seed=4")),
        Case(FAST_GROUPS[1], ("trainer.epochs=nan",)),
        Case(FAST_GROUPS[1], ("dataset.sensitive=race", "regularizer.fairness.criterion=eo", "seed=${trainer.epochs}")),
        Case(FAST_GROUPS[1], ("model=nope", "trainer.epochs=2")),
    ]
    for case in examples:
        outcomes = []
        for make in (COMPOSER, lambda c: compose(c.overrides)):
            try:
                outcomes.append(OmegaConf.to_container(make(case), resolve=False))
            except Exception as error:
                outcomes.append(("refused", refusal(error)))
        assert outcomes[0] == outcomes[1], case.overrides


# ------------------------------------------------------------------------------- slow

ALL_DATASETS = GROUPS["dataset"]


@pytest.mark.slow
def test_thousands_of_fuzzed_command_lines_over_every_choice(capsys: pytest.CaptureFixture[str]) -> None:
    tally = fuzz(cases(any_groups(ALL_DATASETS, GROUPS["model"], ALL_LOGGERS)), SLOW_CASES)
    with capsys.disabled():
        print(f"\nfuzz (slow): {tally.summary()}")
    assert tally.tried >= SLOW_CASES * 0.9 and tally.validated > 20


CLI_CASES = [
    ["trainer.epochs=nan"],
    ["+trainer.epochz=3"],
    ["++nonexistent_key=1"],
    ["dataset=[adult,digits]"],
    ["=1"],
    ["trainer.device=é"],
    ["experiment_name=../../elsewhere"],
    ["seed=${oc.env:HOME}"],
    ["eval.bootstrap=${oops}"],
    ["regularizer=[fairness]", "dataset=digits"],
    ["regularizer=adult,digits"],
    ["trainer.num_threads=99999999999"],
]


@pytest.mark.slow
@pytest.mark.parametrize("overrides", CLI_CASES, ids=[" ".join(c) for c in CLI_CASES])
def test_the_real_dq_train_refuses_in_one_line_and_leaves_nothing(overrides: list[str], tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    env.pop("HYDRA_FULL_ERROR", None)
    command = [str(Path(sys.executable).parent / "dq-train"), "dataset=digits", "trainer.epochs=1"]
    done = subprocess.run(
        [*command, "explain.enabled=false", *overrides, f"hydra.run.dir={tmp_path}/outputs/run"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=env,
        timeout=300,
    )
    lines = done.stderr.splitlines()
    assert done.returncode == 2 and len(lines) == 1 and lines[0].startswith("dq-train: error: "), done.stderr
    assert "Traceback" not in done.stderr and done.stdout == ""
    assert not (tmp_path / "outputs" / "run").exists()
    assert not list(tmp_path.rglob("run.json"))


# ------------------------------------------------------------ Hydra's grammar (issue 21)

HYDRA_FAST_CASES = 100
HYDRA_SLOW_CASES = int(os.environ.get("DQ_FUZZ_HYDRA_CASES", "400"))


def fuzz_argvs(examples: int, root: Path) -> ArgvTally:
    """``examples`` whole command lines over Hydra's grammar through the real dq-train, in
    this process, each in its own folder under ``root``; the tally, never an early stop."""
    tally = ArgvTally()

    @settings(PROFILE, max_examples=examples)
    @given(argv=hydra_argvs())
    def one(argv: list[str]) -> None:
        run_argv(argv, root / str(tally.cases), tally)

    one()
    return tally


def assert_clean(tally: ArgvTally) -> None:
    found = [*tally.tracebacks, *tally.wrote_outside, *tally.bad_refusals]
    assert not found, "\n".join(found)


def test_hydras_grammar_fuzzed_refuses_in_one_line_and_writes_only_inside(tmp_path: Path, capsys) -> None:
    """Hydra's keys, flags, group paths, resolvers, code-naming dicts, special-file and long
    values, through the real dq-train: each case runs (or prints) or is refused in one line,
    and writes nothing outside its own folder. Prints the counts the issue's note quotes:
    pytest -n 0 -s tests/test_fuzz_config.py -k hydras_grammar."""
    tally = fuzz_argvs(HYDRA_FAST_CASES, tmp_path)
    with capsys.disabled():
        print(f"\nfuzz (Hydra's grammar): {tally.summary()}")
    assert tally.cases >= HYDRA_FAST_CASES * 0.9 and tally.refused > tally.cases / 2
    assert_clean(tally)


@pytest.mark.slow
def test_many_command_lines_over_hydras_grammar(tmp_path: Path, capsys) -> None:
    """The same over DQ_FUZZ_HYDRA_CASES cases (400 by default)."""
    tally = fuzz_argvs(HYDRA_SLOW_CASES, tmp_path)
    with capsys.disabled():
        print(f"\nfuzz (Hydra's grammar, slow): {tally.summary()}")
    assert tally.cases >= HYDRA_SLOW_CASES * 0.9
    assert_clean(tally)
