"""The three kinds of report.html opened in a real headless browser (Debian's chromium):
the page renders, its tables and pictures are there and decoded, nothing overflows the
window, and the console stays silent. Skipped, with the reason, where chromium is missing.

Set ``DQ_DOCS_SCREENSHOTS=1`` to refresh docs/report_{run,sweep}.png from this test.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from dq.paper.command import main as table_main
from dq.report.build import write_report
from dq.report.collect import RunResult, read_run
from report_runs import tiny_run

BROWSERS = ("chromium", "chromium-browser", "google-chrome")
WIDTH, HEIGHT = 1280, 2000
DOCS = Path(__file__).resolve().parents[1] / "docs"
# Written into a copy of the page (the page itself has no script): what the browser made of it.
PROBE = """<script>addEventListener("load", function () {
  var images = [].slice.call(document.images);
  var out = document.createElement("pre"); out.id = "dq-probe";
  out.textContent = JSON.stringify({
    tables: document.querySelectorAll("table").length,
    rows: document.querySelectorAll("tbody tr").length,
    headings: [].map.call(document.querySelectorAll("h2"), function (h) { return h.textContent; }),
    images: images.length,
    decoded: images.filter(function (i) { return i.complete && i.naturalWidth > 0; }).length,
    width: document.documentElement.scrollWidth});
  document.body.appendChild(out);
});</script>"""


def browser() -> str:
    for name in BROWSERS:
        if found := shutil.which(name):
            return found
    pytest.skip(
        f"chromium not installed: none of {', '.join(BROWSERS)} on PATH (make setup installs Debian's chromium as root)"
    )


def chromium(page: Path, *args: str, height: int = HEIGHT) -> subprocess.CompletedProcess[str]:
    command = [
        browser(),
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--enable-logging=stderr",
        "--v=0",
        "--virtual-time-budget=5000",
        f"--window-size={WIDTH},{height}",
        *args,
        page.resolve().as_uri(),
    ]
    return subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)


def console_lines(stderr: str) -> list[str]:
    """What the page wrote to the console (chromium logs it as ``CONSOLE`` lines)."""
    return [line for line in stderr.splitlines() if ":CONSOLE" in line or "Uncaught" in line]


def render(page: Path, screenshot: Path, height: int = HEIGHT) -> tuple[dict, list[str]]:
    """Screenshot the page as it is (collecting its console), then read the probe's
    findings from the DOM of a copy with the probe script."""
    shot = chromium(page, f"--screenshot={screenshot}", height=height)
    assert screenshot.is_file(), shot.stderr[-2000:]
    probed = page.with_name(page.stem + ".probe.html")
    probed.write_text(page.read_text().replace("</body>", PROBE + "</body>"))
    dom = chromium(probed, "--dump-dom")
    found = re.search(r'<pre id="dq-probe">(.*?)</pre>', dom.stdout, re.S)
    assert found, f"the page did not finish loading: {dom.stderr[-2000:]}"
    return json.loads(found.group(1).replace("&quot;", '"').replace("&amp;", "&")), console_lines(shot.stderr)


def keep(screenshot: Path, name: str) -> None:
    if os.environ.get("DQ_DOCS_SCREENSHOTS") == "1":
        DOCS.mkdir(exist_ok=True)
        shutil.copyfile(screenshot, DOCS / name)


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> list[RunResult]:
    """Two tiny runs (fairness weight 0 and 2); for docs screenshots, larger ones (3,000
    examples, 3 epochs, two seeds each) so the pictures show a model that learned."""
    browser()
    root = tmp_path_factory.mktemp("browser")
    docs = os.environ.get("DQ_DOCS_SCREENSHOTS") == "1"
    larger = ("dataset.limit=3000", "trainer.epochs=3", "trainer.batch_size=128") if docs else ()
    return [
        read_run(
            tiny_run(
                root / f"w{value}_s{seed}",
                "regularizer=[fairness]",
                f"regularizer.fairness.weight={value}",
                f"seed={seed}",
                *larger,
            )
        )
        for value in (0, 2)
        for seed in ((0, 1) if docs else (0,))
    ]


def check(probe: dict, console: list[str], tables: int, images: int) -> None:
    assert console == [], console
    assert probe["tables"] >= tables and probe["rows"] > 0
    assert probe["images"] >= images and probe["decoded"] == probe["images"], probe
    assert probe["width"] <= WIDTH, f"the page overflows the window: {probe['width']} px"


def test_run_page_renders_in_chromium(runs: list[RunResult], tmp_path: Path) -> None:
    probe, console = render(runs[-1].run_dir / "report.html", tmp_path / "run.png")
    check(probe, console, tables=8, images=2)
    # A tiny test run may be a constant predictor: its "Degenerate model" section comes second.
    headings = [h for h in probe["headings"] if h != "Degenerate model"]
    assert headings[:3] == ["Run", "Metrics", "Curves"] and "Explanations" in headings
    keep(tmp_path / "run.png", "report_run.png")


def test_sweep_page_renders_in_chromium(runs: list[RunResult], tmp_path: Path) -> None:
    """The sweep page as dq-report and a sweep's end write it (dq.report.build.write_report)."""
    broken = RunResult(tmp_path / "9", "failed", problem="RuntimeError: loss is NaN at epoch 3")
    report = write_report(
        [*runs, broken],
        tmp_path / "sweep",
        "Sweep: regularizer.fairness.weight",
        metrics=["test/accuracy", "test/dp_diff", "test/eo_diff"],
        by=["regularizer.fairness.weight"],
    )
    probe, console = render(tmp_path / "sweep" / "report.html", tmp_path / "sweep.png", height=1000)
    check(probe, console, tables=2, images=len(report.figures))
    assert len(report.figures) >= 3  # Pareto fronts, curves, per-group bars, metrics against the weight
    assert probe["headings"] == ["Summary", "Figures", "Failed and broken runs"]
    keep(tmp_path / "sweep.png", "report_sweep.png")


def test_table_page_renders_in_chromium(tmp_path: Path) -> None:
    """The page dq-table writes for a paper table: fair_adult's quick version (its rows,
    baselines and reference rows, the findings and the Pareto figure)."""
    browser()
    out = tmp_path / "tables"
    table_main(["fair_adult", "--quick", "--in-process", "--out", str(out), "--runs", str(tmp_path / "runs")])
    probe, console = render(out / "fair_adult-quick.html", tmp_path / "table.png", height=1400)
    check(probe, console, tables=1, images=1)
    assert probe["rows"] == 7 and probe["headings"] == ["Comparison with the source", "Notes", "Figures"]
    # docs/report_table.png shows the full table instead (a quick model learns little):
    # chromium --headless --window-size=1280,1400 --screenshot=docs/report_table.png tables/fair_adult.html


def test_the_browser_checks_can_fail(tmp_path: Path) -> None:
    """A page with an uncaught error and an undecodable picture fails the checks above."""
    browser()
    page = tmp_path / "bad.html"
    page.write_text(
        "<!DOCTYPE html><html><body><table><tbody><tr><td>1</td></tr></tbody></table>"
        '<img src="data:image/png;base64,AAAA"><script>throw new Error("boom")</script></body></html>'
    )
    probe, console = render(page, tmp_path / "bad.png")
    assert any("Uncaught Error: boom" in line for line in console)
    assert probe["images"] == 1 and probe["decoded"] == 0
    with pytest.raises(AssertionError):
        check(probe, console, tables=1, images=1)
