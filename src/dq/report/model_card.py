"""The Markdown writer: a ``dq.report.document.Document`` as Markdown, which is how
``model_card.md`` is written. What the card says is decided in
``dq.report.sections.card``; this module only escapes and formats it.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from dq.errors import printable
from dq.report import sections
from dq.report.caveats import DEFAULT_THRESHOLDS, Thresholds
from dq.report.collect import RunResult
from dq.report.document import Block, Bullets, Code, Columns, Document, Gallery, Heading, Image, Paragraph, Table
from dq.report.page import format_value
from dq.rundir.write import write_text

MODEL_CARD = "model_card.md"


def md(value: Any) -> str:
    """``value`` as one line of Markdown text: ``|``, ``<``, ``>`` and backslashes escaped,
    newlines folded, so a config string cannot break a table or inject markup."""
    text = format_value(value) if not isinstance(value, str) else value
    text = printable(" ".join(text.split("\n")))
    for char in ("\\", "|", "<", ">", "`"):
        text = text.replace(char, "\\" + char)
    return text


def md_table(header: Sequence[Any], rows: Iterable[Sequence[Any]]) -> str:
    lines = ["| " + " | ".join(md(cell) for cell in header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(md(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def model_card(run: RunResult, thresholds: Thresholds = DEFAULT_THRESHOLDS) -> str:
    """The card's Markdown for a completed run."""
    return markdown(sections.card(run, thresholds))


def write_model_card(run: RunResult, out_path: Path, thresholds: Thresholds = DEFAULT_THRESHOLDS) -> Path:
    """Write ``model_card(run)`` atomically to ``out_path`` and return it."""
    write_text(Path(out_path), model_card(run, thresholds))
    return Path(out_path)


def markdown(doc: Document) -> str:
    """``doc`` as Markdown: ``#`` title, ``##`` sections, every block followed by a blank line."""
    parts = [f"# {md(doc.title)}\n"]
    if doc.subtitle:
        parts.append(f"{md(doc.subtitle)}\n")
    for section in doc.sections:
        parts.append(f"## {md(section.title)}\n")
        parts += [block_markdown(block) for block in section.blocks]
    return "\n".join(parts)


def block_markdown(block: Block) -> str:
    """One block's Markdown, ending in a newline; every string escaped with ``md``."""
    if isinstance(block, Paragraph):
        return f"{md(block.text)}\n"
    if isinstance(block, Bullets):
        return "".join(f"- {md(line)}\n" for line in block.lines)
    if isinstance(block, Heading):
        return f"### {md(block.text)}\n"
    if isinstance(block, Table):
        return md_table(block.header, block.rows) + "\n"
    if isinstance(block, Image):
        return f"![{md(block.caption)}]({Path(block.path).as_posix()})\n"
    if isinstance(block, Code):
        return f"```\n{block.text.rstrip()}\n```\n"
    if isinstance(block, Columns):
        return "\n".join(block_markdown(inner) for group in block.groups for inner in group)
    if isinstance(block, Gallery):
        blocks = [
            inner
            for card in block.cards
            for inner in (Heading(card.title), *([card.image] if card.image else []), *card.blocks)
        ]
        return "\n".join(block_markdown(inner) for inner in blocks)
    raise TypeError(f"not a report block: {block!r}")
