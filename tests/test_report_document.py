"""One section model, two writers: a document's blocks come out of the Markdown writer
(model_card.md) and the HTML writer (report.html) with the same text, each escaped for
its format; and a run's page and card take their shared rows from one builder."""

from __future__ import annotations

from pathlib import Path

import pytest

from dq.report import sections
from dq.report.collect import read_run
from dq.report.document import Bullets, Card, Code, Columns, Document, Gallery, Heading, Image, Paragraph, Table
from dq.report.html import block_html, write_html
from dq.report.model_card import markdown
from report_runs import tiny_run


def every_block(tmp_path: Path) -> Document:
    missing = tmp_path / "gone.png"
    doc = Document("Title <b>", subtitle="sub|title")
    doc.add("Text", Paragraph("a < b | c"), Paragraph("it broke", "problem"), Bullets(["one", "two `x`"]))
    doc.add("Numbers", Heading("table"), Table(["k", "v"], [["pi", 3.14159265], ["n", 7]]))
    doc.add("Layout", Columns([[Heading("left")], [Heading("right")]]), Gallery([Card("m", None, [Code("a: 1")])]))
    doc.add("Figure", Image(missing, "a caption"))
    return doc


def test_markdown_writer_escapes_every_string_and_keeps_the_order(tmp_path: Path) -> None:
    text = markdown(every_block(tmp_path))
    assert text.startswith(
        "# Title \\<b\\>\n\nsub\\|title\n\n## Text\n\na \\< b \\| c\n\nit broke\n\n- one\n- two \\`x\\`\n"
    )
    assert "### table\n\n| k | v |\n|---|---|\n| pi | 3.142 |\n| n | 7 |\n" in text
    assert "### left\n\n### right\n" in text and "### m\n\n```\na: 1\n```\n" in text
    assert f"![a caption]({(tmp_path / 'gone.png').as_posix()})" in text


def test_html_writer_escapes_every_string_and_names_a_missing_figure(tmp_path: Path) -> None:
    page = write_html(every_block(tmp_path), tmp_path / "page.html").read_text(encoding="utf-8")
    assert "<h1>Title &lt;b&gt;</h1>" in page and '<p class="sub">sub|title</p>' in page
    assert '<p class="note">a &lt; b | c</p><p class="problem">it broke</p>' in page
    assert '<td>pi</td><td class="num">3.142</td>' in page  # the same 4 significant digits as the card
    assert '<div class="grid"><div><h3>left</h3></div><div><h3>right</h3></div></div>' in page
    assert '<div class="gallery"><div class="card"><h3>m</h3><pre>a: 1</pre></div></div>' in page
    assert f'<p class="problem">missing figure: {tmp_path / "gone.png"}</p>' in page
    with pytest.raises(TypeError, match="not a report block"):
        block_html("<b>markup</b>")  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    return tiny_run(tmp_path_factory.mktemp("document") / "run")


def test_page_and_card_show_the_same_group_rows(run_dir: Path) -> None:
    run = read_run(run_dir)
    page = {section.title: section.blocks for section in sections.run_page(run, []).sections}
    card = {section.title: section.blocks for section in sections.card(run).sections}
    assert list(card) == list(sections.SECTIONS)
    page_table = next(b for b in page["Fairness by group"] if isinstance(b, Table))
    quantitative = list(card["Quantitative analyses"])
    card_table = quantitative[quantitative.index(Heading("By group")) + 1]
    assert isinstance(card_table, Table) and len(page_table.rows) == 2
    assert page_table.rows == card_table.rows  # group, clean accuracy, robust accuracy at each ε
    worst = run.metrics["test/worst_group_accuracy"]
    assert worst == min(row[1] for row in page_table.rows)
    assert Table(("metric", "value"), [["test/worst_group_accuracy", worst]]) in page["Fairness by group"]
