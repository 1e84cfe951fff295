"""The structured content of a report page, before it is Markdown or HTML.

``dq.report.sections`` builds a ``Document`` (a run's page, its model card, a sweep's or a
paper table's page) from a run directory's files; ``dq.report.markdown`` and
``dq.report.html`` each format one. Content decisions (which sections, which rows, which
caveats) live in one place, and a writer only decides how a block looks.

Every string here is plain text, never markup: the writers escape it for their format.
Table cells keep their Python values (numbers right-align and print with 4 significant
digits in both writers).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal


@dataclass(frozen=True)
class Paragraph:
    """One paragraph; ``tone`` is ``"problem"`` for what went wrong, ``"note"`` otherwise."""

    text: str
    tone: Literal["note", "problem"] = "note"


@dataclass(frozen=True)
class Bullets:
    """A list of short lines: caveats, rules, notes."""

    lines: Sequence[str]


@dataclass(frozen=True)
class Heading:
    """A sub-heading inside a section."""

    text: str


@dataclass(frozen=True)
class Table:
    """Rows of cells under a header."""

    header: Sequence[Any]
    rows: Sequence[Sequence[Any]]


@dataclass(frozen=True)
class Image:
    """A PNG file with its caption; a writer names a missing file instead of failing."""

    path: Path
    caption: str


@dataclass(frozen=True)
class Code:
    """Text kept as it is (a config file)."""

    text: str


@dataclass(frozen=True)
class Columns:
    """Groups of blocks shown side by side where there is room (in Markdown, one after another)."""

    groups: Sequence[Sequence[Block]]


@dataclass(frozen=True)
class Card:
    """One item of a gallery: a title, an optional picture and the blocks beside it."""

    title: str
    image: Image | None
    blocks: Sequence[Block]


@dataclass(frozen=True)
class Gallery:
    """Cards one under another (an explanation method each)."""

    cards: Sequence[Card]


Block = Paragraph | Bullets | Heading | Table | Image | Code | Columns | Gallery


@dataclass(frozen=True)
class Section:
    """A titled part of a page."""

    title: str
    blocks: Sequence[Block]


@dataclass(frozen=True)
class Document:
    """A whole page: a title, an optional one-line subtitle, the sections in order."""

    title: str
    sections: list[Section] = field(default_factory=list)
    subtitle: str | None = None

    def add(self, title: str, *blocks: Block) -> Document:
        """Append the section ``title`` with ``blocks``; returns the document."""
        self.sections.append(Section(title, blocks))
        return self
