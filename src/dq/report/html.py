"""The HTML writer: a ``dq.report.document.Document`` as one self-contained ``report.html``
(see ``dq.report.page``: inline CSS, embedded pictures, every string escaped). What a page
says is decided in ``dq.report.sections``; this module only decides how each block looks.

The three kinds of page: one run, one sweep (or any set of runs), one paper table.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from dq.report import sections
from dq.report.collect import RunResult
from dq.report.document import Block, Bullets, Card, Code, Columns, Document, Gallery, Heading, Image, Paragraph, Table
from dq.report.page import Page, figure_html, table_html

if TYPE_CHECKING:
    import pandas as pd

    from dq.report.plots import Figure


def write_run_html(run: RunResult, figures: Sequence[Figure], out_path: Path) -> Path:
    """``report.html`` for one run (``sections.run_page``)."""
    return write_html(sections.run_page(run, figures), out_path)


def write_sweep_html(
    title: str, summary_frame: pd.DataFrame, figures: Sequence[Figure], problems: Sequence[RunResult], out_path: Path
) -> Path:
    """``report.html`` for a sweep (``sections.sweep_page``)."""
    return write_html(sections.sweep_page(title, summary_frame, figures, problems), out_path)


def write_table_html(
    title: str, frame: pd.DataFrame, notes: Sequence[str], figures: Sequence[Figure], out_path: Path
) -> Path:
    """``report.html`` for a paper table (``sections.table_page``)."""
    return write_html(sections.table_page(title, frame, notes, figures), out_path)


def write_html(doc: Document, out_path: Path) -> Path:
    """Write ``doc`` atomically to ``out_path`` as one page and return the path."""
    page = Page(doc.title, subtitle=doc.subtitle)
    for section in doc.sections:
        page.section(section.title, *(block_html(block) for block in section.blocks))
    return page.write(out_path)


def block_html(block: Block) -> str:
    """One block's markup; every string in it escaped by ``dq.report.page``."""
    if isinstance(block, Paragraph):
        return Page.text(block.text, block.tone)
    if isinstance(block, Bullets):
        return Page.items(block.lines)
    if isinstance(block, Heading):
        return Page.heading(block.text)
    if isinstance(block, Table):
        return table_html(block.header, block.rows)
    if isinstance(block, Image):
        if not Path(block.path).is_file():
            return Page.text(f"missing figure: {block.path}", "problem")
        return figure_html(block.path, block.caption)
    if isinstance(block, Code):
        return Page.pre(block.text)
    if isinstance(block, Columns):
        return '<div class="grid">' + "".join(f"<div>{_blocks(group)}</div>" for group in block.groups) + "</div>"
    if isinstance(block, Gallery):
        return '<div class="gallery">' + "".join(_card(card) for card in block.cards) + "</div>"
    raise TypeError(f"not a report block: {block!r}")


def _blocks(blocks: Sequence[Block]) -> str:
    return "".join(block_html(block) for block in blocks)


def _card(card: Card) -> str:
    """A gallery card: its title, then its picture beside its blocks (in a row that wraps)."""
    if card.image is None:
        return f'<div class="card">{Page.heading(card.title)}{_blocks(card.blocks)}</div>'
    row = f'<div class="row">{block_html(card.image)}{_blocks(card.blocks)}</div>'
    return f'<div class="card">{Page.heading(card.title)}{row}</div>'
