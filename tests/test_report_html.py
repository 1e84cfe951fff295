"""report.html for a run, a sweep and a paper table: sections present, pictures embedded,
every string from a config, a metric name or an error escaped; and the runner's hook."""

from __future__ import annotations

import base64
import re
import shutil
from pathlib import Path

import pandas as pd
import pytest

import dq.report.run_report as run_report
from dq.report.collect import read_run
from dq.report.html import write_run_html, write_sweep_html, write_table_html
from dq.report.page import format_value
from dq.report.plots import Figure
from report_runs import AMP_METRIC, HOSTILE, hostile_copy, tiny_run

RUN_SECTIONS = [
    "Run",
    "Degenerate model",  # the tiny run (200 rows, one epoch) answers the majority class only
    "Metrics",
    "Curves",
    "Fairness by group",
    "Robustness by ε and by class",
    "Explanations",
    "Config",
    "Provenance",
]


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    return tiny_run(tmp_path_factory.mktemp("html") / "run")


def embedded_pngs(page: str) -> list[bytes]:
    return [base64.b64decode(data) for data in re.findall(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', page)]


def test_a_completed_run_writes_its_page_and_card_with_every_section(run_dir: Path) -> None:
    page = (run_dir / "report.html").read_text()
    assert re.findall(r"<h2>(.*?)</h2>", page) == RUN_SECTIONS
    pngs = embedded_pngs(page)
    figures = sorted(path.name for path in (run_dir / "plots").glob("*.png"))
    assert figures == ["curves.png", "group_accuracy.png", "robust_accuracy_vs_eps.png"]
    # the run's three figures and both explanation methods' pictures, each embedded once
    assert len(pngs) == 5 and all(png.startswith(b"\x89PNG\r\n\x1a\n") for png in pngs)
    assert {(run_dir / "plots" / name).read_bytes() for name in figures} <= set(pngs)
    assert "http://" not in page and "https://" not in page and "<script" not in page
    assert "robust accuracy @ ε=0.05" in page and "test/group_accuracy/Female" in page
    assert (run_dir / "model_card.md").read_text().startswith("# Model card: default")


def test_strings_from_config_overrides_and_metric_names_are_escaped(run_dir: Path, tmp_path: Path) -> None:
    run = read_run(hostile_copy(run_dir, tmp_path / "hostile"))
    page = write_run_html(run, [], tmp_path / "page.html").read_text()
    assert HOSTILE not in page and "<i>" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page  # config YAML, run facts and overrides
    assert page.count("&lt;script&gt;") >= 3
    assert AMP_METRIC.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;") in page
    assert "A&amp;B &lt;i&gt;" in page.split("<h2>Fairness by group</h2>")[1].split("<h2>")[0]


def test_a_failed_run_gets_a_page_that_says_why_and_no_card(run_dir: Path, tmp_path: Path) -> None:
    failed = tmp_path / "failed"
    failed.mkdir()
    (failed / "run.json").write_text('{"status": "failed", "error": "ValueError: <bad> & worse"}')
    written = run_report.write_run_report(failed)
    assert written == [failed / "report.html"]
    page = written[0].read_text()
    assert '<p class="problem">ValueError: &lt;bad&gt; &amp; worse</p>' in page
    assert "<h2>Metrics</h2>" not in page and not (failed / "model_card.md").exists()


def test_sweep_page_has_the_summary_the_figures_and_the_problem_runs(run_dir: Path, tmp_path: Path) -> None:
    picture = next((run_dir / "explanations").glob("*.png"))
    frame = pd.DataFrame(
        {"regularizer.fairness.weight": ["0", "1 & <b>"], "test/accuracy mean": [0.81, 0.78], "n": [2, 2]}
    )
    broken = read_run(tmp_path)  # no run.json here: broken
    path = write_sweep_html("fairness weight <swept>", frame, [Figure(picture, "a & b")], [broken], tmp_path / "s.html")
    page = path.read_text()
    assert "<title>fairness weight &lt;swept&gt;</title>" in page
    assert re.findall(r"<h2>(.*?)</h2>", page) == ["Summary", "Figures", "Failed and broken runs"]
    assert "1 &amp; &lt;b&gt;" in page and '<td class="num">0.81</td>' in page
    assert len(embedded_pngs(page)) == 1 and "<figcaption>a &amp; b</figcaption>" in page
    assert "run.json does not exist; re-run the training or restore the file" in page


def test_table_page_has_the_comparison_and_notes(tmp_path: Path) -> None:
    frame = pd.DataFrame({"row": ["ERM <MLP>"], "source": [85.35], "ours": ["84.9 ± 0.4"], "within tolerance": [True]})
    page = write_table_html("fair_adult", frame, ["ran on 5% of Adult & one seed"], [], tmp_path / "t.html").read_text()
    assert re.findall(r"<h2>(.*?)</h2>", page) == ["Comparison with the source", "Notes"]
    assert "ERM &lt;MLP&gt;" in page and "<li>ran on 5% of Adult &amp; one seed</li>" in page
    assert "<td>84.9 ± 0.4</td>" in page and "<td>True</td>" in page


def test_a_failing_report_writer_warns_and_the_run_still_completes(tmp_path: Path, monkeypatch) -> None:
    def broken(*args, **kwargs):
        raise RuntimeError("report exploded\nsecond line")

    monkeypatch.setattr(run_report, "write_run_report", broken)
    run = tiny_run(tmp_path / "run", "explain.enabled=false", "eval.robust.eps=[]")
    assert read_run(run).ok and not (run / "report.html").exists()
    console = (tmp_path / "console.txt").read_text()
    assert "warning: the run's report was not written: RuntimeError: report exploded" in console
    assert "second line" not in console


def test_the_report_switches_turn_each_file_off(tmp_path: Path) -> None:
    run = tiny_run(tmp_path / "run", "explain.enabled=false", "eval.robust.eps=[]", "report.model_card=false")
    assert (run / "report.html").is_file() and not (run / "model_card.md").exists()
    assert "no explanations (explain.enabled=false)" in (run / "report.html").read_text()
    run = tiny_run(tmp_path / "off", "explain.enabled=false", "eval.robust.eps=[]", "report.html=false")
    assert (run / "model_card.md").is_file() and not (run / "report.html").exists()


def test_dq_explain_rewrites_the_report_with_the_new_explanations(run_dir: Path, tmp_path: Path) -> None:
    from dq.reexplain import explain_directory

    copy = tmp_path / "again"
    shutil.copytree(run_dir, copy)
    metrics = explain_directory(
        copy, ["explain.methods=[saliency]", "explain.n_samples=2", "explain.metrics=[sparseness]"]
    )
    page = (copy / "report.html").read_text()
    assert f'<td class="num">{format_value(metrics["explain/saliency/sparseness"])}</td>' in page
    assert format_value(metrics["explain/saliency/sparseness"]) in (copy / "model_card.md").read_text()


def test_robustness_section_breaks_robust_accuracy_down_by_class(run_dir: Path, tmp_path: Path) -> None:
    run = read_run(run_dir)
    run.metrics.update({"test/class_accuracy/Shirt": 0.6, "test/class_robust_accuracy/Shirt@0.1": 0.11})
    section = write_run_html(run, [], tmp_path / "p.html").read_text().split("<h2>Robustness by ε and by class</h2>")[1]
    section = section.split("<h2>")[0]
    assert "<h3>robust accuracy by class</h3>" in section and "<h3>robust accuracy by group</h3>" in section
    assert '<tr><td>Shirt</td><td class="num">0.6</td><td class="num">0.11</td></tr>' in section
