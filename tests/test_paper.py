"""dq-table: table files checked in one line each, rows expanded, numbers compared, files
written; every conf/paper/*.yaml table's quick version runs end to end."""

from __future__ import annotations

import csv
import io
import math
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from omegaconf import DictConfig

from benchmark_files import write_waterbirds
from dq.config import config_dir
from dq.errors import DQUserError
from dq.paper.command import main
from dq.paper.compare import RowResult, Stat, check_finding, stat, within
from dq.paper.load import load_table
from dq.paper.plan import BASELINE, REFERENCE, RUN, PlannedRow, expand_rows, make_plan
from dq.paper.spec import Finding, Row, SourceValue, TableSpec, Tolerance
from dq.paper.write import TableOutcome, csv_text, markdown, show_stat, tex, write_table

GOOD = """
name: {name}
title: "A test table"
source: {{cite: "Someone 2020", where: "Table 1", setting: "theirs"}}
setting: "ours"
metrics: [test/accuracy]
tolerance: {{abs: 0.5}}
seeds: [0]
overrides: [dataset=digits, model=mlp, trainer.epochs=1, explain.enabled=false, trainer.progress=false]
rows:
  - label: plain
    overrides: []
    source: {{test/accuracy: {{mean: 0.5}}}}
  - label: swept
    overrides: ["trainer.batch_size=16,32"]
  - label: theirs
    reference: true
    source: {{test/accuracy: {{mean: 0.9, std: 0.01}}}}
findings:
  - {{text: "plain beats chance", metric: test/accuracy, left: plain, op: ">", right: 0.1}}
"""


def write_table_file(directory: Path, name: str, text: str) -> Path:
    path = directory / f"{name}.yaml"
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def load_text(tmp_path: Path, text: str, name: str = "t") -> TableSpec:
    write_table_file(tmp_path, name, text)
    return load_table(name, tmp_path)


# --- loading: one line per mistake -------------------------------------------------------


def test_good_table_loads(tmp_path: Path) -> None:
    spec = load_text(tmp_path, GOOD.format(name="t"))
    assert [row.label for row in spec.rows] == ["plain", "swept", "theirs"]
    assert spec.rows[2].source["test/accuracy"] == SourceValue(0.9, 0.01)


def test_unknown_table_lists_the_available_ones(tmp_path: Path) -> None:
    write_table_file(tmp_path, "one", GOOD.format(name="one"))
    with pytest.raises(DQUserError, match=r"^unknown paper table 'two'; available: one$"):
        load_table("two", tmp_path)


def test_the_committed_tables_are_listed() -> None:
    with pytest.raises(DQUserError, match=r"available: .*fair_adult.*rrr_decoy"):
        load_table("no_such_table")


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            ("tolerance: {abs: 0.5}", "tolerence: {abs: 0.5}"),
            r"unknown key 'paper/t.tolerence' \(nearest: 'paper/t.tolerance'\)",
        ),
        (
            ("right: 0.1", "right: nobody"),
            r"finding 1 \('plain beats chance'\): no row is labelled 'nobody'; rows: plain, swept \(trainer.batch_size=16\)",
        ),
        (('op: ">"', 'op: "=>"'), r"unknown op '=>'; allowed: > >= < <="),
        (
            ("metrics: [test/accuracy]", "metrics: [test/accuracy, test/dp_diff]"),
            r"metric 'test/dp_diff' is compared but no row gives its source value",
        ),
        (("overrides: []", "overrides: ['x={prepare:base}']"), r"row 'plain': \{prepare:base\} names no prepare stage"),
        (("name: t", "name: other"), r"name is 'other'; it must be the file's name 't'"),
        (("overrides: []", 'overrides: ["trainer.batch_size=16,,"]'), r"row 'plain': bad override"),
        (
            ("    reference: true", "    reference: true\n    baseline: dq.paper.baselines.logistic_regression"),
            r"either a reference row or a baseline row",
        ),
        (
            ("seeds: [0]", 'seeds: [0]\nrequires: {"dataset root": "a folder"}'),
            r"^paper/t: requires 'dataset root': not a run config key; give dotted keys such as dataset.root",
        ),
        (
            ("seeds: [0]", 'seeds: [0]\nrequires: {hydra.run.dir: "a folder"}'),
            r"^paper/t: requires 'hydra.run.dir': not a run config key",
        ),
        (
            ("seeds: [0]", 'seeds: [0]\nrequires: {dataset.root: " "}'),
            r"^paper/t: requires 'dataset.root': say what it must point to \(the description is empty\)$",
        ),
        (
            ("seeds: [0]", "seeds: [0]\nrequires: [dataset.root, model.weights]"),
            r"^paper/t: requires must map each config key to what it must point to, e.g. .*; got \['dataset.root', 'model.weights'\]$",
        ),
    ],
)
def test_table_mistakes_are_one_line(tmp_path: Path, change: tuple[str, str], message: str) -> None:
    text = GOOD.format(name="t")
    assert change[0] in text
    with pytest.raises(DQUserError, match=message) as caught:
        load_text(tmp_path, text.replace(change[0], change[1], 1))
    assert "\n" not in str(caught.value)


def test_unknown_baseline_lists_the_available_ones(tmp_path: Path) -> None:
    text = GOOD.format(name="t").replace("    overrides: []\n", "    baseline: dq.paper.baselines.svm\n", 1)
    with pytest.raises(
        DQUserError, match=r"unknown baseline 'dq.paper.baselines.svm'; available: .*exponentiated_gradient"
    ):
        load_text(tmp_path, text)


def test_bad_yaml_says_where(tmp_path: Path) -> None:
    with pytest.raises(DQUserError, match=r"not readable YAML: expected .* at line 3, column 1$"):
        load_text(tmp_path, "name: t\nrows: [a, [b\n")


# --- planning ------------------------------------------------------------------------------


def test_sweep_rows_expand_with_hydra_syntax() -> None:
    spec = TableSpec(
        name="t",
        rows=[
            Row(label="grid", overrides=["a=1", "regularizer.fairness.weight=0.1,1", "+b=x,'y,z'"]),
            Row(label="list", overrides=["regularizer=[fairness,adversarial]"]),
            Row(label="ref", reference=True, source={"m": SourceValue(1.0)}),
            Row(label="base", baseline="dq.paper.baselines.logistic_regression"),
        ],
    )
    rows = expand_rows(spec)
    assert [row.label for row in rows] == [
        "grid (regularizer.fairness.weight=0.1, b=x)",
        "grid (regularizer.fairness.weight=0.1, b='y,z')",
        "grid (regularizer.fairness.weight=1, b=x)",
        "grid (regularizer.fairness.weight=1, b='y,z')",
        "list",
        "ref",
        "base",
    ]
    assert rows[1].overrides == ["a=1", "regularizer.fairness.weight=0.1", "+b='y,z'"]
    assert rows[4].overrides == ["regularizer=[fairness,adversarial]"]
    assert [row.kind for row in rows[4:]] == [RUN, REFERENCE, BASELINE]
    assert len({row.slug for row in rows}) == len(rows)


def test_quick_swaps_seeds_and_appends_overrides_and_prepare_points_at_the_same_job(tmp_path: Path) -> None:
    spec = TableSpec(
        name="t", overrides=["dataset=digits"], seeds=[0, 1, 2], rows=[Row(label="r", overrides=["x={prepare:base}"])]
    )
    spec.quick.seeds, spec.quick.overrides = [5], ["trainer.epochs=1"]
    full = make_plan(spec, quick=False, runs_dir=tmp_path, extra=["launcher=joblib"])
    quick = make_plan(spec, quick=True, runs_dir=tmp_path, extra=["launcher=joblib"])
    assert full.seeds == [0, 1, 2] and quick.seeds == [5]
    row = quick.rows[0]
    expected = f"x={(tmp_path / 'prepare-base').resolve()}/seed-${{seed}}"
    assert quick.run_overrides(row) == ["dataset=digits", expected, "trainer.epochs=1", "launcher=joblib"]
    assert full.run_overrides(row) == ["dataset=digits", expected, "launcher=joblib"]


# --- comparing -----------------------------------------------------------------------------


def test_stat_is_mean_and_sample_std_of_the_finite_values() -> None:
    value = stat([0.8, 0.9, float("nan"), 1.0])
    assert value is not None and value.n == 3
    assert value.mean == pytest.approx(0.9) and value.std == pytest.approx(0.1)
    assert stat([0.7]) == Stat(0.7, None, 1)
    assert stat([float("nan")]) is None


def test_a_count_is_shown_whole_not_with_four_decimals() -> None:
    """test/examples is a JSON integer in every seed's metrics.json: 200 ± 0, not 200.0000 ± 0.0000."""
    assert show_stat(stat([200, 200, 200])) == "200 ± 0 (3)"
    assert show_stat(stat([15060, 15061])) == "15,060.5 ± 0.7 (2)"
    assert show_stat(stat([0.8, 0.9])) == "0.8500 ± 0.0707 (2)"


def test_tolerance_is_abs_or_sigma_times_both_sides_spread() -> None:
    source = SourceValue(0.8535, 0.0034)
    # One seed of ours: its std counts as 0, so 3 × 0.0034 = 0.0102 is allowed.
    assert within(Stat(0.8535 + 0.0101, None, 1), source, Tolerance(sigma=3.0)) is True
    assert within(Stat(0.8535 - 0.0103, None, 1), source, Tolerance(sigma=3.0)) is False
    # Ours spread 0.0045 over seeds: 3 × sqrt(0.0045² + 0.0034²) = 3 × 0.00564 = 0.01692.
    assert within(Stat(0.8535 - 0.0168, 0.0045, 3), source, Tolerance(sigma=3.0)) is True
    assert within(Stat(0.8535 - 0.0171, 0.0045, 3), source, Tolerance(sigma=3.0)) is False
    assert within(Stat(0.80, 0.1, 3), SourceValue(0.82), Tolerance(abs=0.03)) is True
    # The source gives no std: the sigma rule cannot apply, however wide our own spread.
    assert within(Stat(0.78, 0.5, 3), SourceValue(0.82), Tolerance(abs=0.03, sigma=3.0)) is False
    assert within(Stat(0.5, 0.1, 3), source, Tolerance()) is None


def test_the_table_states_the_tolerance_rule() -> None:
    spec = TableSpec(name="t", title="t", metrics=["test/accuracy"], tolerance=Tolerance(sigma=3.0))
    outcome = TableOutcome(spec, False, [0, 1, 2], [], [], "dq-table t", 1.0, {})
    rule = "|ours − source| ≤ 3 × √(σ_ours² + σ_source²) where the source gives a std"
    assert rule in markdown(outcome)
    assert r"3 $\times$ $\surd$($\sigma$\_ours$^2$ + $\sigma$\_source$^2$)" in tex(outcome)


def result(label: str, kind: str = RUN, **values: float) -> RowResult:
    source = {"test/accuracy": SourceValue(0.9, 0.01)} if kind == REFERENCE else {}
    planned = PlannedRow(label, kind, [], Row(label=label, reference=kind == REFERENCE, source=source))
    stats = {key.replace("__", "/"): Stat(v, 0.01, 3) for key, v in values.items()}
    return RowResult(planned, stats, completed=0 if kind == REFERENCE else 3)


def test_findings_with_margins_rows_numbers_and_reference_rows() -> None:
    rows = [result("a", test__accuracy=0.80), result("b", test__accuracy=0.55), result("ref", REFERENCE)]
    holds = check_finding(Finding(text="t", metric="test/accuracy", left="a", op=">", right="b", margin=0.2), rows)
    assert holds.holds is True and (holds.left, holds.right) == (0.80, 0.55)
    assert "0.8 (a) > 0.55 (b) + 0.2" in holds.describe()
    assert (
        check_finding(Finding(text="t", metric="test/accuracy", left="a", op=">", right="b", margin=0.3), rows).holds
        is False
    )
    assert (
        check_finding(Finding(text="t", metric="test/accuracy", left="b", op="<", right=0.6, margin=0.04), rows).holds
        is True
    )
    assert (
        check_finding(Finding(text="t", metric="test/accuracy", left="b", op="<", right=0.6, margin=0.06), rows).holds
        is False
    )
    versus_source = check_finding(
        Finding(text="t", metric="test/accuracy", left="a", op=">=", right="ref", margin=-0.1), rows
    )
    assert versus_source.holds is True and versus_source.right == 0.9
    assert "0.8 (a) >= 0.9 (ref) - 0.1" in versus_source.describe()
    missing = check_finding(Finding(text="t", metric="test/dp_diff", left="a", op="<", right="b"), rows)
    assert missing.holds is None


# --- writing -------------------------------------------------------------------------------


def outcome_for_writers() -> TableOutcome:
    spec = TableSpec(
        name="t_x",
        title="Right & wrong_100%",
        metrics=["test/accuracy"],
        columns=["test/dp_diff"],
        tolerance=Tolerance(abs=0.05),
    )
    spec.source.cite, spec.source.where = "Ross et al. 2017", "recorded output"
    ok = result("with penalty", test__accuracy=0.93, test__dp_diff=0.1)
    ok.planned.row.source = {"test/accuracy": SourceValue(0.961)}
    far = result("no penalty", test__accuracy=0.70)
    far.planned.row.source = {"test/accuracy": SourceValue(0.516)}
    failed = RowResult(PlannedRow("broken | row", RUN, [], Row(label="broken | row")), {}, 0, ["seed 0: boom"])
    ref = result("theirs", REFERENCE)
    ref.planned.row.note = "full MNIST"
    finding = check_finding(
        Finding(text="penalty helps", metric="test/accuracy", left="with penalty", op=">", right="no penalty"),
        [ok, far],
    )
    return TableOutcome(
        spec,
        False,
        [0, 1, 2],
        [ok, far, failed, ref],
        [finding],
        "dq-table t_x",
        12.3,
        {"commit": "abc", "dirty": False},
    )


def test_markdown_shows_source_ours_diff_verdict_findings_and_provenance() -> None:
    text = markdown(outcome_for_writers())
    lines = text.splitlines()
    assert lines[0] == "# Right & wrong_100%"
    assert "| with penalty | 0.9610 | 0.9300 ± 0.0100 (3) | -0.0310 | ✓ | 0.1000 ± 0.0100 (3) |" in text
    assert "| no penalty | 0.5160 | 0.7000 ± 0.0100 (3) | +0.1840 | ✗ |" in text
    assert "| broken \\| row |  | failed |" in text and "seed 0: boom" in text
    assert "| theirs (different setting) | 0.9000 ± 0.0100 |" in text and "full MNIST" in text
    assert "- ✓ holds: penalty helps — test/accuracy: 0.93 (with penalty) > 0.7 (no penalty)" in text
    assert "Made by `dq-table t_x` in 12 s; dq commit abc." in text
    assert "|ours − source| ≤ 0.05" in text


def test_a_quick_table_states_the_quick_setting_and_its_overrides_not_the_full_one() -> None:
    outcome = outcome_for_writers()
    outcome.spec.setting = "10 epochs, 6,000 examples per split"
    outcome.spec.quick.overrides = ["dataset.limit=300", "trainer.epochs=2"]
    outcome.spec.quick.setting = "300 examples per split, 2 epochs"
    outcome.quick, outcome.seeds, outcome.extra = True, [0], ["trainer.device=cpu"]
    lines = markdown(outcome).splitlines()
    run = next(line for line in lines if line.startswith("Setting"))
    assert run == (
        "Setting run (quick version, CI-sized; not the table's numbers): 300 examples per split, 2 epochs; "
        "seeds 0; quick overrides appended to every run: dataset.limit=300, trainer.epochs=2; "
        "from the command line: trainer.device=cpu."
    )
    assert (
        "Full table's setting (not run here): ours — 10 epochs, 6,000 examples per split;"
        in lines[lines.index(run) + 2]
    )
    assert r"quick overrides appended to every run: dataset.limit=300, trainer.epochs=2" in tex(outcome)
    outcome.quick = False
    assert "Setting: ours — 10 epochs, 6,000 examples per split;" in markdown(outcome)
    assert "dataset.limit=300" not in markdown(outcome)


def test_csv_is_machine_readable() -> None:
    rows = list(csv.DictReader(io.StringIO(csv_text(outcome_for_writers()))))
    assert [row["row"] for row in rows] == ["with penalty", "no penalty", "broken | row", "theirs"]
    assert float(rows[0]["test/accuracy/mean"]) == pytest.approx(0.93)
    assert float(rows[0]["test/accuracy/diff"]) == pytest.approx(-0.031)
    assert rows[0]["test/accuracy/within"] == "true" and rows[1]["test/accuracy/within"] == "false"
    assert rows[2]["failed"] == "true" and rows[2]["test/accuracy/mean"] == ""
    assert rows[3]["kind"] == "reference" and float(rows[3]["test/accuracy/source_std"]) == pytest.approx(0.01)


def test_tex_is_booktabs_and_escaped() -> None:
    text = tex(outcome_for_writers())
    assert r"\toprule" in text and r"\midrule" in text and r"\bottomrule" in text
    assert r"Right \& wrong\_100\%" in text and r"\label{tab:t\_x}" in text
    assert r"0.9300 $\pm$ 0.0100 (3)" in text and r"test/accuracy ours (n)" in text
    assert "✓" not in text and "±" not in text


def test_write_table_writes_the_three_files(tmp_path: Path) -> None:
    paths = write_table(outcome_for_writers(), tmp_path / "tables")
    assert [p.name for p in paths] == ["t_x.md", "t_x.csv", "t_x.tex"]
    assert all(p.read_text(encoding="utf-8") for p in paths)
    assert not [p for p in (tmp_path / "tables").iterdir() if p.name.startswith(".")]  # no temporary left


# --- running ---------------------------------------------------------------------------------


def quick_csv(out: Path, name: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO((out / f"{name}-quick.csv").read_text(encoding="utf-8"))))


def quick_config(spec: TableSpec) -> DictConfig:
    """The table's common and quick overrides, composed: which dataset and model it runs."""
    from dq.spec import compose

    return compose([*spec.overrides, *spec.quick.overrides])


def write_dataset_root(spec: TableSpec, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """The table's dataset, tiny, in its published layout (tests/benchmark_files.py); the
    decoded images cached under tmp_path, not in the user's cache."""
    writers = {"waterbirds": write_waterbirds}
    name = quick_config(spec).dataset.name
    if name not in writers:
        pytest.fail(f"table {spec.name} runs dataset {name}, which this test cannot write: add its writer here")
    monkeypatch.setenv("DQ_CACHE_DIR", str(tmp_path / "cache"))
    writers[name](tmp_path / "data")
    return str(tmp_path / "data")


def write_weights(spec: TableSpec, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """A state_dict of the table's torchvision arch as torch.save writes it, randomly
    initialised: the quick run checks the path from file to model, not the numbers."""
    import torchvision

    arch = quick_config(spec).model.arch
    path = tmp_path / f"{arch}.pth"
    torch.save(torchvision.models.get_model(arch, weights=None).state_dict(), path)
    return str(path)


# What the quick test gives for each key a table `requires` (its local files); a table that
# requires a key missing here fails the test rather than being skipped.
REQUIRED_INPUTS = {"dataset.root": write_dataset_root, "model.weights": write_weights}


def required_inputs(spec: TableSpec, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    unknown = [key for key in spec.requires if key not in REQUIRED_INPUTS]
    if unknown:
        pytest.fail(f"table {spec.name} requires {', '.join(unknown)}: add a generator to REQUIRED_INPUTS")
    return [f"{key}={REQUIRED_INPUTS[key](spec, tmp_path, monkeypatch)}" for key in spec.requires]


@pytest.mark.parametrize("name", sorted(p.stem for p in (config_dir() / "paper").glob("*.yaml")))
def test_every_committed_table_runs_quick(
    name: str, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The quick version of each table file runs its rows (in this process: the subprocess
    path is the failed-row and prepare tests') and writes the three files; a table's
    required local files are generated in their real format and given on the command line."""
    spec = load_table(name)
    inputs = required_inputs(spec, tmp_path, monkeypatch)
    args = [name, "--quick", "--in-process", "--out", str(tmp_path / "tables"), "--runs", str(tmp_path / "runs")]
    main([*args, "trainer.device=cpu", "eval.bootstrap=0", *inputs])  # intervals are tests/test_intervals.py's
    rows = quick_csv(tmp_path / "tables", name)
    assert len(rows) == len(expand_rows(spec))
    for row in rows:
        if row["kind"] != REFERENCE:
            assert row["completed"] == str(len(spec.quick.seeds)), row
            for metric in spec.metrics:
                assert math.isfinite(float(row[f"{metric}/mean"])), (row["row"], metric)
    text = (tmp_path / "tables" / f"{name}-quick.md").read_text(encoding="utf-8")
    assert f"Made by `dq-table {name} --quick" in text and "failed" not in text
    made = next(line for line in text.splitlines() if line.startswith("Made by"))
    assert re.search(r"\(\d+ CPUs\), 20\d\d-\d\d-\d\dT[\d:]+ to 20\d\d-\d\d-\d\dT[\d:]+ UTC, 1-minute load", made), made
    assert re.search(r"load average mean \d+\.\d, peak \d+\.\d \((?:[2-9]|[1-9]\d+) samples\)", made), made
    header = next(line for line in text.splitlines() if line.startswith("Setting run (quick version"))
    assert spec.quick.setting in header and all(item in header for item in spec.quick.overrides), header
    assert all(item in header for item in inputs), header  # the page says which files it ran on
    if spec.pareto:
        assert (tmp_path / "tables" / f"{name}-quick-pareto.png").stat().st_size > 10_000
    page = (tmp_path / "tables" / f"{name}-quick.html").read_text(encoding="utf-8")
    assert "<h2>Comparison with the source</h2>" in page and page.count("<tr>") > len(rows)
    assert page.count("data:image/png;base64,") == (1 if spec.pareto else 0)  # the Pareto figure
    assert "wrote " in capsys.readouterr().out


FAILING = GOOD.replace(
    '  - label: swept\n    overrides: ["trainer.batch_size=16,32"]\n',
    "  - label: on a gpu\n    overrides: [trainer.device=cuda]\n",
)


@pytest.mark.skipif(torch.cuda.is_available(), reason="the failing row needs a machine without CUDA")
def test_a_failed_row_is_written_as_failed_exits_1_and_a_rerun_reuses_the_finished_runs(tmp_path: Path) -> None:
    write_table_file(tmp_path, "t", FAILING.format(name="t"))
    command = [sys.executable, "-c", "from dq.cli import table_main; table_main()", "t", "--tables", str(tmp_path)]
    command += ["--out", str(tmp_path / "tables"), "--runs", str(tmp_path / "runs")]
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(
            filter(None, [str(Path(__file__).parents[1] / "src"), os.environ.get("PYTHONPATH")])
        ),
    }
    done = subprocess.run(command, capture_output=True, text=True, env=env, cwd=tmp_path, timeout=600, check=False)
    assert done.returncode == 1, done.stdout + done.stderr
    assert "row 'on a gpu': 0/1 seeds completed" in done.stdout
    text = (tmp_path / "tables" / "t.md").read_text(encoding="utf-8")
    assert "| on a gpu |  | failed |" in text
    assert "- ✓ holds: plain beats chance" in text
    # Again, in this process: the finished row is reused, the failed one tried again.
    with pytest.raises(SystemExit) as caught:
        main(["t", "--tables", str(tmp_path), "--out", str(tmp_path / "tables"), "--runs", str(tmp_path / "runs")])
    assert caught.value.code == 1
    assert (tmp_path / "runs" / "plain" / "0" / "run.json").is_file()
    made_by = (tmp_path / "tables" / "t.md").read_text(encoding="utf-8").splitlines()[-1]
    assert "(1 of 2 runs reused from an earlier invocation)" in made_by, made_by


def test_a_typo_in_an_extra_override_stops_before_any_run(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write_table_file(tmp_path, "t", GOOD.format(name="t"))
    with pytest.raises(SystemExit) as caught:
        main(["t", "--tables", str(tmp_path), "--runs", str(tmp_path / "runs"), "trainer.epochz=1"])
    assert caught.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("dq-table: error: row 'plain': ") and "\n" not in err
    # The very line dq-train gives for the same typo, nearest key included.
    from dq.cli import refusal
    from dq.spec import compose

    with pytest.raises(Exception) as composed:
        compose(["dataset=digits", "trainer.epochz=1"])
    train_line = refusal(composed.value)
    assert train_line is not None and train_line.startswith("unknown key 'trainer.epochz' (nearest: 'trainer.epochs')")
    assert err == f"dq-table: error: row 'plain': {train_line}"
    assert not (tmp_path / "runs").exists()


REQUIRES = 'requires: {dataset.root: "the folder holding waterbirds_v1.0/", model.weights: "a state_dict file"}\n'


def test_a_table_whose_local_files_are_not_given_stops_before_any_run(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write_table_file(tmp_path, "t", GOOD.format(name="t") + REQUIRES)
    where = ["--tables", str(tmp_path), "--out", str(tmp_path / "tables"), "--runs", str(tmp_path / "runs")]
    with pytest.raises(SystemExit) as caught:
        main(["t", *where])
    assert caught.value.code == 2
    assert capsys.readouterr().err == (
        "dq-table: error: table t needs local files that dq cannot ship; name them on the command line: "
        "dataset.root=<the folder holding waterbirds_v1.0/>, model.weights=<a state_dict file>\n"
    )
    # One given: only the other is named.
    with pytest.raises(SystemExit) as caught:
        main(["t", *where, "--quick", "model.weights=/w/resnet50.pth"])
    assert caught.value.code == 2
    assert capsys.readouterr().err.endswith("command line: dataset.root=<the folder holding waterbirds_v1.0/>\n")
    assert not (tmp_path / "runs").exists() and not (tmp_path / "tables").exists()


def test_make_evidence_skips_a_table_whose_local_files_are_not_in_the_environment(tmp_path: Path) -> None:
    """scripts/paper_evidence.sh names the table and the variable to set, and does not run it
    (BIN points nowhere: running it would fail)."""
    script = Path(__file__).resolve().parents[1] / "scripts" / "paper_evidence.sh"
    env = {key: value for key, value in os.environ.items() if not key.startswith("ARGS_")}
    env.update(BIN=str(tmp_path / "no-bin"), OUT=str(tmp_path / "out"))
    done = subprocess.run(
        ["bash", str(script), "group_dro_waterbirds"], env=env, capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.splitlines() == [
        "== group_dro_waterbirds: skipped: it needs local files; to run it, set ARGS_group_dro_waterbirds to"
        " the overrides naming them (the keys under requires: in conf/paper/group_dro_waterbirds.yaml)",
        "0 of 1 tables written to " + str(tmp_path / "out") + "; skipped (local files not given): group_dro_waterbirds",
    ]


@pytest.mark.slow
def test_full_fair_adult_erm_row_matches_ffb_within_3_sigma(tmp_path: Path) -> None:
    """The full fair_adult table (joblib): our ERM MLP is within 3σ of FFB's published row."""
    main(["fair_adult", "launcher=joblib", "--out", str(tmp_path / "tables"), "--runs", str(tmp_path / "runs")])
    rows = {
        row["row"]: row for row in csv.DictReader(io.StringIO((tmp_path / "tables" / "fair_adult.csv").read_text()))
    }
    assert rows["MLP (ERM)"]["test/accuracy/within"] == "true"
    assert rows["MLP (ERM)"]["test/dp_diff/within"] == "true"


PREPARED = """
name: prep
title: "LoRA on a prepared base"
metrics: [test/accuracy]
tolerance: {abs: 0.9}
seeds: [0]
overrides: [dataset=digits, model=mlp, trainer.epochs=1, explain.enabled=false, trainer.progress=false, dataset.limit=200]
prepare:
  base: {overrides: [experiment_name=base]}
rows:
  - label: lora
    overrides: ["regularizer=[lora]", "regularizer.lora.init_from={prepare:base}"]
    source: {test/accuracy: {mean: 0.5}}
"""


def test_prepare_runs_first_and_a_row_starts_from_the_run_of_its_own_seed(tmp_path: Path) -> None:
    from omegaconf import OmegaConf

    write_table_file(tmp_path, "prep", PREPARED)
    runs = tmp_path / "runs"
    main(["prep", "--tables", str(tmp_path), "--out", str(tmp_path / "tables"), "--runs", str(runs)])
    assert (runs / "prepare-base" / "seed-0").resolve() == (runs / "prepare-base" / "0").resolve()
    saved = OmegaConf.load(runs / "lora" / "0" / ".hydra" / "config.yaml")
    assert Path(saved.regularizer.lora.init_from) == (runs / "prepare-base").resolve() / "seed-0"
    assert "| lora | 0.5000 |" in (tmp_path / "tables" / "prep.md").read_text(encoding="utf-8")
