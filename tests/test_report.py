"""dq-report's tables: runs grouped by overrides minus the seed (or by ``--by`` keys),
mean ± std and n equal to numpy's over the runs' metrics.json, the csv/md/tex files, the
runs left out, the CLI's errors and exit codes, and the report a sweep leaves at its root.

The runs are real: one in-process sweep (Hydra's basic launcher) of tiny digits runs,
two learning rates × two seeds, plus a learning rate the config refuses (two failed
jobs), and a copy of a job whose metrics.json is corrupt (a broken run)."""

from __future__ import annotations

import csv
import math
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest

from dq.cli import report_main, train_main
from dq.errors import DQUserError
from dq.report.build import write_report
from dq.report.collect import RunResult, find_runs
from dq.report.summary import select_metrics, summarize
from dq.report.tables import latex_escape, summary_latex, summary_markdown
from dq.rundir.read import read_json
from dq.sweep.callback import write_sweep_report

TINY = [
    "dataset=digits",
    "model=mlp",
    "dataset.limit=96",
    "trainer.epochs=1",
    "trainer.batch_size=32",
    "explain.enabled=false",
    "trainer.progress=false",
    "trainer.device=cpu",
]
LRS = ("0.01", "0.1")  # 0.01 sorts first: groups are in numeric order


@pytest.fixture(scope="module")
def sweep_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished sweep: jobs 0-5 (lr 0.01, 0.1, -1 × seed 0, 1), the -1 jobs failed."""
    root = tmp_path_factory.mktemp("report")
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(root)
        patch.delenv("HYDRA_FULL_ERROR", raising=False)
        patch.setattr(
            sys, "argv", ["dq-train", "-m", *TINY, f"optimizer.lr={','.join(LRS)},-1", "seed=0,1", "hydra.sweep.dir=sw"]
        )
        with pytest.raises(SystemExit) as stop:
            train_main()
    assert stop.value.code == 1  # the two refused jobs
    return root / "sw"


@pytest.fixture(scope="module")
def runs_dir(sweep_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The sweep's jobs copied, plus a broken run (job 0 with a corrupt metrics.json)."""
    where = tmp_path_factory.mktemp("runs") / "sw"
    shutil.copytree(sweep_dir, where)
    shutil.copytree(sweep_dir / "0", where / "broken")
    (where / "broken" / "metrics.json").write_text('{"test/accuracy": 0.5,')
    return where


def job_metrics(sweep_dir: Path, jobs: list[int], metric: str) -> list[float]:
    return [read_json(sweep_dir / str(job) / "metrics.json")[metric] for job in jobs]


def lr_of(sweep_dir: Path, job: int) -> str:
    overrides = read_json(sweep_dir / str(job) / "run.json")["overrides"]
    return next(item.partition("=")[2] for item in overrides if item.startswith("optimizer.lr="))


def jobs_by_lr(sweep_dir: Path) -> dict[str, list[int]]:
    return {lr: [job for job in range(6) if lr_of(sweep_dir, job) == lr] for lr in LRS}


def test_groups_hold_numpys_mean_and_sample_std_and_the_problem_runs(runs_dir: Path) -> None:
    runs = find_runs([runs_dir])
    summary = summarize(runs)
    assert summary.keys == ["optimizer.lr"]
    # Hydra's sweeper spells the booleans False, as the jobs' overrides record them.
    assert summary.common == {
        key: value.replace("false", "False") for key, _, value in (o.partition("=") for o in TINY)
    }
    assert [group.label for group in summary.groups] == ["optimizer.lr=0.01", "optimizer.lr=0.1"]
    assert "test/accuracy" in summary.metrics and "params/total" in summary.metrics
    for group, (lr, jobs) in zip(summary.groups, jobs_by_lr(runs_dir).items(), strict=True):
        assert group.values["optimizer.lr"] == lr and len(jobs) == 2 and group.n == 2
        assert sorted(group.run_dirs) == sorted(runs_dir / str(job) for job in jobs)
        for metric in ("test/accuracy", "test/loss", "test/ece"):
            values = job_metrics(runs_dir, jobs, metric)
            assert group.stats[metric].mean == pytest.approx(np.mean(values), abs=1e-12)
            assert group.stats[metric].std == pytest.approx(np.std(values, ddof=1), abs=1e-12)
            assert group.stats[metric].n == 2
    # The two seeds of one setting gave different accuracies: a std of 0 would hide a bug.
    assert any(group.stats["test/accuracy"].std > 0 for group in summary.groups)

    problems = {run.run_dir.name: (run.status, run.problem) for run in summary.problems}
    failed = [str(job) for job in range(6) if read_json(runs_dir / str(job) / "run.json")["status"] == "failed"]
    assert len(failed) == 2 and set(problems) == {*failed, "broken"}
    assert problems[failed[0]] == ("failed", "DQUserError: optimizer.lr must be > 0, got -1.0")
    assert problems["broken"][0] == "broken" and problems["broken"][1].startswith(
        "metrics.json is truncated or not JSON ("
    )


def test_summary_files_hold_the_numbers_and_list_the_runs_left_out(runs_dir: Path, tmp_path: Path) -> None:
    report = write_report(find_runs([runs_dir]), tmp_path, "Learning rate", metrics=["test/accuracy", "params/*"])
    assert [path.name for path in report.files] == ["summary.csv", "summary.md", "summary.tex", "report.html"]
    assert report.summary.metrics == ["test/accuracy", "params/total", "params/trainable", "params/trainable_fraction"]
    by_lr = jobs_by_lr(runs_dir)
    accuracy = {lr: job_metrics(runs_dir, jobs, "test/accuracy") for lr, jobs in by_lr.items()}
    total = job_metrics(runs_dir, by_lr["0.01"], "params/total")[0]

    with (tmp_path / "summary.csv").open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert [(row["label"], row["optimizer.lr"], row["dataset"], row["n"]) for row in rows] == [
        ("optimizer.lr=0.01", "0.01", "digits", "2"),
        ("optimizer.lr=0.1", "0.1", "digits", "2"),
    ]
    for row, lr in zip(rows, LRS, strict=True):
        assert float(row["test/accuracy/mean"]) == pytest.approx(np.mean(accuracy[lr]), abs=1e-12)
        assert float(row["test/accuracy/std"]) == pytest.approx(np.std(accuracy[lr], ddof=1), abs=1e-12)
        assert row["test/accuracy/n"] == "2" and float(row["params/total/mean"]) == total

    markdown = (tmp_path / "summary.md").read_text()
    lines = markdown.splitlines()
    assert lines[0] == "# Learning rate"
    assert lines[2].startswith("Mean ± std (sample, ddof=1) over the seeds of each group; 4 runs in 2 groups.")
    assert "Common to all: dataset.limit=96, dataset=digits, explain.enabled=False," in lines[2]
    # lr 0.1 collapses both seeds to one class (dq.report.degenerate): a degenerate column after n
    assert [group.degenerate_cell() for group in report.summary.groups] == ["", "constant predictor 2/2"]
    header = "| optimizer.lr | n | degenerate | test/accuracy | params/total | params/trainable | params/trainable_fraction |"
    assert lines[4] == header and lines[5] == "| --- | ---: | ---: | ---: | ---: | ---: | ---: |"
    mean, std = np.mean(accuracy["0.01"]), np.std(accuracy["0.01"], ddof=1)
    assert lines[6] == f"| 0.01 | 2 |  | {mean:.3f} ± {std:.3f} | {total} ± 0 | {total} ± 0 | 1.000 ± 0.000 |"
    assert lines[7].startswith("| 0.1 | 2 | constant predictor 2/2 | ")
    left_out = lines[lines.index("## Runs not included") + 2 :]
    assert left_out[:2] == ["| run | status | error |", "| --- | --- | --- |"]
    assert any(
        line.startswith(f"| {runs_dir / 'broken'} | broken | metrics.json is truncated or not JSON (")
        for line in left_out
    )
    assert sum("| failed | DQUserError: optimizer.lr must be > 0, got -1.0 |" in line for line in left_out) == 2

    tex = (tmp_path / "summary.tex").read_text().splitlines()
    assert "\\begin{tabular}{lrlrrrr}" in tex and "\\toprule" in tex and "\\bottomrule" in tex
    assert tex[tex.index("\\toprule") + 1] == (
        "optimizer.lr & n & degenerate & test/accuracy & params/total & params/trainable & params/trainable\\_fraction \\\\"
    )
    mean, std = np.mean(accuracy["0.1"]), np.std(accuracy["0.1"], ddof=1)
    row = f"0.1 & 2 & constant predictor 2/2 & ${mean:.3f} \\pm {std:.3f}$ & ${total} \\pm 0$ & ${total} \\pm 0$ & $1.000 \\pm 0.000$ \\\\"
    assert row in tex
    assert "Mean $\\pm$ std" in tex[3] and "trainer.device=cpu" in tex[3]

    frame = report.summary.frame()
    assert list(frame.columns) == ["optimizer.lr", "n", "degenerate", *report.summary.metrics]
    assert frame.iloc[1]["test/accuracy"] == f"{mean:.3f} ± {std:.3f}"


def test_by_keys_come_from_overrides_or_the_composed_config(runs_dir: Path) -> None:
    runs = find_runs([runs_dir])
    # optimizer.name and model were never overridden as such: read from .hydra/config.yaml.
    summary = summarize(runs, metrics=["test/accuracy"], by=["optimizer.lr", "optimizer.name", "model"])
    assert summary.keys == ["optimizer.lr"] and summary.common == {"optimizer.name": "adam", "model": "mlp"}
    assert [group.n for group in summary.groups] == [2, 2]

    one = summarize(runs, metrics=["test/accuracy"], by=["optimizer.betas"])
    assert [group.label for group in one.groups] == ["all runs"] and one.groups[0].n == 4
    assert one.rows()[0]["group"] == "all runs"

    with pytest.raises(DQUserError, match=r"--by 'optimizer.lrr' is neither .*; nearest: optimizer.lr"):
        summarize(runs, by=["optimizer.lrr"])


def test_one_run_has_no_std_and_a_missing_metric_shows_its_n(runs_dir: Path, tmp_path: Path) -> None:
    runs = [run for run in find_runs([runs_dir]) if run.ok][:3]  # the second group has one run
    runs[0].metrics["extra/only_here"] = 0.25
    summary = summarize(runs, metrics=["test/accuracy", "extra/*"])
    single = next(group for group in summary.groups if group.n == 1)
    assert math.isnan(single.stats["test/accuracy"].std)
    rows = summary.rows()
    assert rows[1]["test/accuracy"].endswith(" ± –") and rows[1]["extra/only_here"] == "–"
    assert rows[0]["extra/only_here"] == "0.250 ± – (n=1)"
    tex = summary_latex(summary, "t")
    assert " \\pm \\mbox{--}$ & -- \\\\" in tex and "$0.250 \\pm \\mbox{--}$ (n=1)" in tex
    write_report(runs, tmp_path, "t", metrics=["test/accuracy"])
    with (tmp_path / "summary.csv").open(newline="") as handle:
        assert list(csv.DictReader(handle))[1]["test/accuracy/std"] == ""


def test_strings_from_configs_are_escaped_for_latex_and_markdown(tmp_path: Path) -> None:
    assert latex_escape("a_b%c&d#e$f{g}h~i^j\\k") == (
        "a\\_b\\%c\\&d\\#e\\$f\\{g\\}h\\textasciitilde{}i\\textasciicircum{}j\\textbackslash{}k"
    )
    runs = [
        RunResult(tmp_path / str(i), "completed", [f"note={note}", f"seed={i}"], i, {"test/accuracy": acc})
        for i, (note, acc) in enumerate([("50%_a&b", 0.5), ("50%_a&b", 0.7), ("x|<b>", 0.9)])
    ]
    summary = summarize(runs)
    tex = summary_latex(summary, "title_with_$")
    assert "\\caption{title\\_with\\_\\$." in tex
    assert "50\\%\\_a\\&b & 2 & $0.600 \\pm 0.141$ \\\\" in tex
    markdown = summary_markdown(summary, "t")
    assert "| x\\|&lt;b> | 1 | 0.900 ± – |" in markdown


def test_a_metric_pattern_matching_nothing_names_the_nearest(runs_dir: Path) -> None:
    with pytest.raises(DQUserError) as caught:
        summarize(find_runs([runs_dir]), metrics=["test/acuracy"])
    assert (
        str(caught.value)
        == "--metrics 'test/acuracy' matches no metric of these runs; nearest: test/accuracy, test/ece, test/majority_rate"
    )


def run_cli(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    try:
        report_main(argv)
    except SystemExit as stop:
        code = int(stop.code or 0)
    else:
        code = 0
    out, err = capsys.readouterr()
    return code, out, err


def test_cli_writes_the_report_and_lists_problem_runs_on_stderr(
    runs_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out_dir = tmp_path / "out"
    code, out, err = run_cli([str(runs_dir), "--metrics", "test/*", "--out", str(out_dir), "--title", "T"], capsys)
    assert code == 0
    assert f"wrote {out_dir / 'summary.md'}" in out and "optimizer.lr" in out
    assert "degenerate: optimizer.lr=0.1: constant predictor 2/2" in out
    assert sorted(path.name for path in out_dir.iterdir() if path.is_file()) == [
        "report.html",
        "summary.csv",
        "summary.md",
        "summary.tex",
    ]
    problems = err.splitlines()
    assert len(problems) == 3 and all(line.startswith("dq-report: not included: ") for line in problems)
    assert f"dq-report: not included: {runs_dir / 'broken'} (broken): metrics.json is truncated or not JSON (" in err
    assert (out_dir / "summary.md").read_text().startswith("# T\n")


def test_cli_writes_into_the_single_path_by_default(
    runs_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    target = tmp_path / "one"
    shutil.copytree(runs_dir / "0", target / "0")
    code, _, err = run_cli([str(target)], capsys)
    assert code == 0 and err == ""
    assert "| all runs | 1 |" in (target / "summary.md").read_text()


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["{missing}"], "no such file or directory: {missing}"),
        (["{empty}"], "no runs under {empty} (a run directory holds run.json)"),
        (
            ["{runs}", "--metrics", "test/acuracy"],
            "--metrics 'test/acuracy' matches no metric of these runs; nearest: test/accuracy, test/ece, test/majority_rate",
        ),
        (
            ["{runs}", "--by", "optimizer.lrr"],
            "--by 'optimizer.lrr' is neither an override nor a config key of any run; nearest: optimizer.lr, optimizer, optimizer.name",
        ),
        ([], "the following arguments are required: PATH (see dq-report --help)"),
    ],
)
def test_cli_bad_input_is_one_line_and_exit_2(
    argv: list[str], message: str, runs_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "empty").mkdir()
    names = {"missing": tmp_path / "missing", "empty": tmp_path / "empty", "runs": runs_dir}
    out_dir = tmp_path / "out"
    code, _, err = run_cli([arg.format(**names) for arg in argv] + (["--out", str(out_dir)] if argv else []), capsys)
    assert code == 2
    assert err.splitlines() == [f"dq-report: error: {message.format(**names)}"]
    assert not out_dir.exists()  # nothing half-written


def test_a_sweep_leaves_its_report_at_its_root(sweep_dir: Path) -> None:
    with (sweep_dir / "summary.csv").open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert [(row["optimizer.lr"], row["n"]) for row in rows] == [("0.01", "2"), ("0.1", "2")]
    accuracy = job_metrics(sweep_dir, jobs_by_lr(sweep_dir)["0.1"], "test/accuracy")
    assert float(rows[1]["test/accuracy/mean"]) == pytest.approx(np.mean(accuracy), abs=1e-12)
    markdown = (sweep_dir / "summary.md").read_text()
    assert markdown.startswith("# optimizer.lr swept (2 groups, 4 runs)\n")
    assert markdown.count("| failed | DQUserError: optimizer.lr must be > 0, got -1.0 |") == 2
    assert (sweep_dir / "summary.tex").read_text().count("\\pm") >= 2
    page = (sweep_dir / "report.html").read_text()
    assert "<h1>optimizer.lr swept (2 groups, 4 runs)</h1>" in page and page.count("optimizer.lr must be &gt; 0") == 2
    with (sweep_dir / "jobs.csv").open(newline="") as handle:
        assert len(list(csv.DictReader(handle))) == 6  # the per-job table beside it


def test_a_report_that_cannot_be_written_is_one_line_and_keeps_sweep_json(
    runs_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    sweep = read_json(runs_dir / "sweep.json")
    sweep["jobs"] = [{**job, "run_dir": str(runs_dir / str(job["job"]))} for job in sweep["jobs"]]
    (tmp_path / "summary.md").mkdir()  # a directory where the report's file goes
    write_sweep_report(sweep, tmp_path)
    err = capsys.readouterr().err
    assert err.startswith("dq-train: sweep report not written: ") and len(err.splitlines()) == 1


def test_only_failed_runs_still_give_a_report_that_lists_them(runs_dir: Path, tmp_path: Path) -> None:
    failed = [run for run in find_runs([runs_dir]) if run.status == "failed"]
    report = write_report(failed, tmp_path, "t", by=["optimizer.lr"])
    assert report.summary.groups == [] and len(report.summary.problems) == 2
    markdown = (tmp_path / "summary.md").read_text()
    assert "No completed runs." in markdown and markdown.count("| failed |") == 2
    assert (tmp_path / "summary.csv").read_text() == "label,n\n"


def test_by_values_from_overrides_and_configs_are_spelt_alike(runs_dir: Path) -> None:
    runs = [run for run in find_runs([runs_dir]) if run.ok]
    # trainer.progress is an override (Hydra's sweeper wrote "False"), model.hidden comes from
    # the config (a list): both in the one spelling an override would use.
    summary = summarize(runs, metrics=["test/accuracy"], by=["trainer.progress", "model.hidden", "optimizer.lr"])
    hidden = runs[0].config()["model"]["hidden"]
    assert summary.common["trainer.progress"] == "false"
    assert summary.common["model.hidden"] == "[" + ",".join(str(width) for width in hidden) + "]"
    assert [group.values["optimizer.lr"] for group in summary.groups] == ["0.01", "0.1"]


def test_a_glob_matches_interval_bounds_only_where_it_names_them() -> None:
    """``test/group_accuracy/*`` once gave "mean of ci_low ± std" columns."""
    keys = ["test/accuracy", "test/accuracy/ci_low", "test/accuracy/ci_high"]
    keys += [f"test/group_accuracy/{g}{bound}" for g in ("Female", "Male") for bound in ("", "/ci_low", "/ci_high")]
    assert select_metrics(keys, ["test/group_accuracy/*"]) == ["test/group_accuracy/Female", "test/group_accuracy/Male"]
    assert select_metrics(keys, ["test/group_accuracy/*/ci_*"]) == [
        "test/group_accuracy/Female/ci_low",
        "test/group_accuracy/Female/ci_high",
        "test/group_accuracy/Male/ci_low",
        "test/group_accuracy/Male/ci_high",
    ]
    assert select_metrics(keys, ["*/ci_low"]) == [
        "test/accuracy/ci_low",
        *(f"test/group_accuracy/{g}/ci_low" for g in ("Female", "Male")),
    ]
    assert select_metrics(keys, None) == ["test/accuracy", "test/group_accuracy/Female", "test/group_accuracy/Male"]
