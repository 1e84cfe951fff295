"""A tiny builder of self-contained HTML pages: inline CSS, pictures embedded as
``data:image/png;base64`` URIs, no scripts and nothing fetched from a network, so a page
opens the same from a laptop, a CI artefact or an e-mail attachment.

Every string that reaches the page (a config value, a metric name, a path, an error line)
goes through ``html.escape`` here; callers hand plain text, never markup, except the
markup this module itself returns.
"""

from __future__ import annotations

import base64
import html
import math
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dq.errors import printable
from dq.rundir.write import write_text

if TYPE_CHECKING:
    import pandas as pd

    from dq.report.plots import Figure

CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:0 auto;max-width:1180px;
padding:1.2em 1.6em;color:#1d2330;background:#fff;line-height:1.4}
h1{font-size:1.6em;margin:.2em 0 .1em}h2{font-size:1.25em;border-bottom:2px solid #dfe3ea;
padding-bottom:.2em;margin-top:1.6em}h3{font-size:1.05em;margin:1em 0 .4em}
p.sub{color:#5a6372;margin:0 0 1em}
.wide{max-width:100%;overflow-x:auto}table{border-collapse:collapse;margin:.4em 0 1em;font-size:.9em}
th,td{border:1px solid #d5dae3;padding:.25em .6em;text-align:left;vertical-align:top}
th{background:#eef1f6}td.num{text-align:right;font-variant-numeric:tabular-nums}
tr:nth-child(even) td{background:#f8f9fb}
pre{background:#f5f7fa;border:1px solid #dfe3ea;padding:.7em;overflow:auto;font-size:.85em}
figure{display:inline-block;margin:.4em 1em 1em 0;vertical-align:top;max-width:100%}
figure img{max-width:100%;border:1px solid #dfe3ea}
figcaption{font-size:.85em;color:#4a5361;max-width:560px}
.grid{display:flex;flex-wrap:wrap;column-gap:2em}.gallery{display:flex;flex-direction:column;gap:1em}.card{border:1px solid #dfe3ea;border-radius:6px;padding:.6em;
max-width:100%}.card img{width:100%}.row{display:flex;flex-wrap:wrap;gap:1.5em;align-items:flex-start}.row>figure{flex:0 1 800px;margin:0}
.problem{color:#a01818}.note{color:#4a5361}ul.notes li{margin:.2em 0}
"""


def esc(value: Any) -> str:
    """``value`` as text, control characters as escapes (dq.errors.printable), HTML-escaped
    (quotes included)."""
    return html.escape(printable(str(value), keep="\n\t"), quote=True)


def format_value(value: Any) -> str:
    """A cell's text: floats to 4 significant digits, NaN as an empty cell, the rest as ``str``."""
    if isinstance(value, bool) or value is None:
        return "" if value is None else str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return ""
        return f"{value:.4g}"
    return str(value)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def table_html(header: Sequence[Any], rows: Iterable[Sequence[Any]]) -> str:
    """A ``<table>`` of ``rows`` under ``header``; numbers right-aligned, every cell escaped."""
    head = "".join(f"<th>{esc(name)}</th>" for name in header)
    body = []
    for row in rows:
        cells = "".join(
            f'<td class="num">{esc(format_value(cell))}</td>'
            if _is_number(cell)
            else f"<td>{esc(format_value(cell))}</td>"
            for cell in row
        )
        body.append(f"<tr>{cells}</tr>")
    # A wide table (a sweep's many metrics) scrolls inside its box instead of widening the page.
    return f'<div class="wide"><table><thead><tr>{head}</tr></thead><tbody>{"".join(body)}</tbody></table></div>'


def frame_rows(frame: pd.DataFrame) -> tuple[list[str], list[list[Any]]]:
    """A DataFrame's header and rows as plain values; a named or non-default index becomes
    the first column(s)."""
    import pandas as pd

    keep_index = any(name is not None for name in frame.index.names) or not isinstance(frame.index, pd.RangeIndex)
    if keep_index:
        frame = frame.reset_index()
    header = [" / ".join(map(str, col)) if isinstance(col, tuple) else str(col) for col in frame.columns]
    rows = [[_plain(value) for value in record] for record in frame.itertuples(index=False, name=None)]
    return header, rows


def _plain(value: Any) -> Any:
    """numpy scalars → Python numbers (so they right-align and format like floats)."""
    item = getattr(value, "item", None)
    return item() if callable(item) and not isinstance(value, (str, bytes)) else value


def image_uri(path: Path) -> str:
    """The PNG at ``path`` as a ``data:image/png;base64,...`` URI."""
    return "data:image/png;base64," + base64.b64encode(Path(path).read_bytes()).decode("ascii")


def figure_html(path: Path, caption: str) -> str:
    return f'<figure><img src="{image_uri(path)}" alt="{esc(caption)}"><figcaption>{esc(caption)}</figcaption></figure>'


class Page:
    """One HTML page built section by section, e.g.::

    page = Page("Run outputs/x", subtitle="completed")
    page.section("Metrics", page.key_values({keys.test(keys.ACCURACY): 0.97}))
    page.write(run_dir / "report.html")
    """

    def __init__(self, title: str, subtitle: str | None = None) -> None:
        self.title = title
        self.subtitle = subtitle
        self.parts: list[str] = []

    def section(self, heading: str, *bodies: str) -> Page:
        """Append ``<h2>heading</h2>`` and the (already built) markup ``bodies``."""
        self.parts.append(f"<section><h2>{esc(heading)}</h2>{''.join(bodies)}</section>")
        return self

    @staticmethod
    def heading(text: str) -> str:
        return f"<h3>{esc(text)}</h3>"

    @staticmethod
    def text(text: str, css_class: str = "note") -> str:
        return f'<p class="{esc(css_class)}">{esc(text)}</p>'

    @staticmethod
    def items(lines: Iterable[str], css_class: str = "notes") -> str:
        return f'<ul class="{esc(css_class)}">' + "".join(f"<li>{esc(line)}</li>" for line in lines) + "</ul>"

    @staticmethod
    def pre(text: str) -> str:
        return f"<pre>{esc(text)}</pre>"

    @staticmethod
    def table(frame: pd.DataFrame) -> str:
        return table_html(*frame_rows(frame))

    @staticmethod
    def rows(header: Sequence[Any], rows: Iterable[Sequence[Any]]) -> str:
        return table_html(header, rows)

    @staticmethod
    def key_values(values: Mapping[str, Any], header: Sequence[str] = ("key", "value")) -> str:
        return table_html(header, ([key, value] for key, value in values.items()))

    @staticmethod
    def figures(figures: Sequence[Figure]) -> str:
        """Each figure embedded with its caption; a figure whose file is missing is named instead."""
        parts = []
        for fig in figures:
            if Path(fig.path).is_file():
                parts.append(figure_html(fig.path, fig.caption))
            else:
                parts.append(Page.text(f"missing figure: {fig.path}", "problem"))
        return "".join(parts)

    def render(self) -> str:
        subtitle = f'<p class="sub">{esc(self.subtitle)}</p>' if self.subtitle else ""
        return (
            '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
            '<meta name="viewport" content="width=device-width, initial-scale=1">'
            f"<title>{esc(self.title)}</title><style>{CSS}</style></head>"
            f"<body><h1>{esc(self.title)}</h1>{subtitle}{''.join(self.parts)}</body></html>\n"
        )

    def write(self, path: Path) -> Path:
        """Write the page atomically to ``path`` and return it."""
        write_text(Path(path), self.render())
        return Path(path)
