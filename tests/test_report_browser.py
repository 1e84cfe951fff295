"""The three kinds of report.html opened in a real headless browser (Debian's chromium):
the page renders, its tables and pictures are there and decoded, nothing overflows the
window, and the console stays silent. Skipped, with the reason, where chromium is missing.

Set ``DQ_DOCS_SCREENSHOTS=1`` to refresh docs/report_{run,sweep,table}.png from this test.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pandas as pd
import pytest

from dq.report.build import write_report
from dq.report.collect import RunResult, read_run
from dq.report.html import write_table_html
from dq.report.plots import Figure
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


def weight(run: RunResult) -> float:
    return run.config()["regularizer"]["fairness"]["weight"]


def scatter(runs: list[RunResult], out: Path) -> Figure:
    """Accuracy against DP gap of the runs: a real figure for the sweep and table pages
    (dq.report.plots draws the full set where it is available)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3.4), dpi=90)
    for run in runs:
        ax.scatter(
            100 * run.metrics["test/dp_diff"],
            100 * run.metrics["test/accuracy"],
            label=f"weight {weight(run)}, seed {run.seed}",
        )
    ax.set(xlabel="DP difference (percentage points)", ylabel="test accuracy (%)", title="fairness weight swept")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out)
    plt.close(fig)
    return Figure(out, "Test accuracy against demographic-parity difference, one point per run.")


def summary(runs: list[RunResult]) -> pd.DataFrame:
    rows = [{"regularizer.fairness.weight": weight(run), **run.metrics} for run in runs]
    frame = pd.DataFrame(rows).groupby("regularizer.fairness.weight")[["test/accuracy", "test/dp_diff", "test/eo_diff"]]
    return frame.agg(["mean", "std", "count"])


def check(probe: dict, console: list[str], tables: int, images: int) -> None:
    assert console == [], console
    assert probe["tables"] >= tables and probe["rows"] > 0
    assert probe["images"] >= images and probe["decoded"] == probe["images"], probe
    assert probe["width"] <= WIDTH, f"the page overflows the window: {probe['width']} px"


def test_run_page_renders_in_chromium(runs: list[RunResult], tmp_path: Path) -> None:
    probe, console = render(runs[-1].run_dir / "report.html", tmp_path / "run.png")
    check(probe, console, tables=8, images=2)
    assert probe["headings"][:3] == ["Run", "Metrics", "Curves"] and "Explanations" in probe["headings"]
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


def test_table_page_renders_in_chromium(runs: list[RunResult], tmp_path: Path) -> None:
    erm = [run for run in runs if weight(run) == 0]
    ours = pd.Series([100 * run.metrics["test/accuracy"] for run in erm])
    cfg = erm[0].config()
    frame = pd.DataFrame(
        {
            "row": ["MLP ERM, accuracy (%)"],
            "setting": [
                f"ours: Adult, {cfg['dataset']['limit']} examples, {cfg['trainer']['epochs']} epoch(s) (FFB: full Adult)"
            ],
            "source": ["85.35 ± 0.34"],
            "ours": [f"{ours.mean():.2f} ± {ours.std() if len(ours) > 1 else 0:.2f} (n={len(ours)})"],
            "difference": [round(ours.mean() - 85.35, 2)],
            "within tolerance": [abs(ours.mean() - 85.35) <= 3 * 0.34],
        }
    )
    notes = [
        "Source: Han et al., FFB, Adult with sex as the sensitive attribute, MLP ERM row.",
        "Tolerance: 3σ of the source.",
    ]
    page = write_table_html("fair_adult (test)", frame, notes, [scatter(runs, tmp_path / "p.png")], tmp_path / "t.html")
    probe, console = render(page, tmp_path / "table.png", height=900)
    check(probe, console, tables=1, images=1)
    keep(tmp_path / "table.png", "report_table.png")


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
