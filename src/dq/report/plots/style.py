"""How every report figure looks and is written: one size per kind, one dpi, one colour
cycle, axis labels with units, labels shortened readably, and atomic PNG writes.

Figures are built with matplotlib's object API (``matplotlib.figure.Figure``, no pyplot),
as in ``dq.explain.pictures``: nothing global changes, no backend is chosen, and any
thread can draw. Figures use the constrained layout and are saved without
``bbox_inches="tight"``, so a PNG is exactly ``figsize × DPI`` pixels.
"""

from __future__ import annotations

import io
import textwrap
from collections.abc import Sequence
from pathlib import Path

import matplotlib
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from dq.rundir.write import atomic_write

DPI = 120
PANEL = (5.0, 3.8)  # inches per panel (width, height)
MAX_LABEL = 34  # characters of a series label before it is shortened
MAX_TICK = 16  # characters of a group name on an axis
OUTSIDE_LEGEND = 6  # series beyond which the legend moves beside the axes
MAX_GROUP_LEGEND = 12  # run groups beyond which points are not told apart by colour
MAX_PANELS = 4  # robust radii (or metrics) shown side by side at most
BAND_ALPHA = 0.18
FRONT_COLOR = "#222222"
# Tabular datasets are attacked in standardised feature units; the others in pixel units
# ([0, 1]) or raw signal units. Names as in conf/dataset/.
TABULAR = frozenset({"adult", "compas", "german"})
SERIES = frozenset({"gunpoint"})
NORMS = {"linf": "L∞", "l2": "L2", "l1": "L1"}

Drawn = tuple[Figure, str]  # a built figure and its one-sentence caption


def new_figure(panels: int = 1, size: tuple[float, float] = PANEL, stacked: bool = False) -> tuple[Figure, list[Axes]]:
    """A figure of ``panels`` axes side by side (or one above the other when ``stacked``:
    wide panels), ``size`` inches each."""
    if stacked:
        fig = Figure(figsize=(size[0], size[1] * panels), layout="constrained")
        return fig, list(fig.subplots(panels, 1, squeeze=False)[:, 0])
    fig = Figure(figsize=(size[0] * panels, size[1]), layout="constrained")
    return fig, list(fig.subplots(1, panels, squeeze=False)[0])


def save(fig: Figure, path: Path) -> Path:
    """Render ``fig`` to PNG in memory, then write it atomically (no half-written file)."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=DPI, metadata={"Software": None})
    atomic_write(path, lambda tmp: tmp.write_bytes(buffer.getvalue()))
    return path


CROWD_COLOR = "#7f7f7f"


def crowded(count: int) -> bool:
    """Too many run groups to tell apart by colour and legend (an Optuna search, say)."""
    return count > MAX_GROUP_LEGEND


def series_style(index: int, count: int, label: str) -> tuple[object, str | None, float]:
    """Colour, legend label and band opacity of series ``index`` of ``count``: its own
    colour and label, or, when crowded, the same thin grey for all with one legend entry
    and no band (overlapping bands would hide the lines)."""
    if crowded(count):
        return CROWD_COLOR, (f"{count} settings (too many to tell apart)" if index == 0 else None), 0.0
    return colors(count)[index], label, BAND_ALPHA


def colors(count: int) -> list[tuple[float, float, float, float]]:
    """``count`` distinct colours in a fixed order (tab10, tab20 beyond ten)."""
    cmap = matplotlib.colormaps["tab10" if count <= 10 else "tab20"]
    return [cmap(i % cmap.N) for i in range(count)]


def shorten(text: str, limit: int = MAX_LABEL) -> str:
    """``text`` cut to ``limit`` characters, the cut marked with an ellipsis."""
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def short_key(key: str) -> str:
    """An override key as a label: its last two dotted parts (``regularizer.fairness.weight``
    → ``fairness.weight``), without ``+``/``~`` prefixes."""
    return ".".join(key.lstrip("+~").split(".")[-2:])


def eps_label(config: dict) -> str:
    """The ε axis label with the attack's norm and the input scale, read from the config
    (``eval.robust.norm``, ``dataset.name``); L∞ and pixel scale when unknown."""
    norm = str((config.get("eval") or {}).get("robust", {}).get("norm", "linf")).lower()
    dataset = str((config.get("dataset") or {}).get("name", ""))
    scale = (
        "standardised features" if dataset in TABULAR else "input units" if dataset in SERIES else "pixel scale [0, 1]"
    )
    return f"ε ({NORMS.get(norm, norm)}, {scale})"


def finish_axes(ax: Axes, xlabel: str, ylabel: str, title: str | None = None, series: int = 0) -> None:
    """Label both axes, add a grid, set the panel title, and a legend when more than one
    series was drawn (beside the axes when it has many entries; a crowded plot's series
    share one entry)."""
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if title:
        ax.set_title(title, fontsize=10)
    ax.grid(True, alpha=0.3)
    ax.spines[["top", "right"]].set_visible(False)
    entries = len(ax.get_legend_handles_labels()[1])
    if series > 1 and entries > OUTSIDE_LEGEND:
        ax.legend(fontsize=6, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0.0)
    elif series > 1 and entries:
        ax.legend(fontsize=7, loc="best")


def figure_legend(fig: Figure, ax: Axes, series: int) -> None:
    """One legend for the whole figure, below the panels (bars fill their axes, so a
    legend inside would hide some), when there is more than one series."""
    if series > 1:
        handles, labels = ax.get_legend_handles_labels()
        per_row = int(fig.get_figwidth() * 15 // (max(map(len, labels)) + 7))  # 8-point text: ~15 chars/inch
        ncol = max(1, min(len(labels), 4, per_row))
        fig.legend(handles, labels, loc="outside lower center", ncol=ncol, fontsize=8, frameon=False)


TITLE_SIZE = 11  # points
TITLE_MARGIN = 0.92  # share of the figure's width a title line may take


def suptitle(fig: Figure, title: str, swept: Sequence[str] = ()) -> None:
    """The figure title: what is plotted, and what was swept (the varying override keys),
    wrapped to the figure's width so that no part is cut off (lines measured in the
    title's font: a guess of characters per inch clipped single-run titles)."""
    limit = fig.get_figwidth() * 72 * TITLE_MARGIN
    lines = wrap_to_width(title, limit)
    if swept:
        lines += wrap_to_width(f"swept: {', '.join(short_key(k) for k in swept)}", limit)
    fig.suptitle("\n".join(lines), fontsize=TITLE_SIZE)


def wrap_to_width(text: str, points: float, size: float = TITLE_SIZE) -> list[str]:
    """``text`` wrapped at spaces into the fewest lines each at most ``points`` wide in the
    default font at ``size`` (a word longer than that alone is broken)."""
    from matplotlib.font_manager import FontProperties
    from matplotlib.textpath import text_to_path

    font = FontProperties(size=size)

    def width(line: str) -> float:
        return text_to_path.get_text_width_height_descent(line, font, ismath=False)[0]

    for chars in range(max(len(text), 1), 0, -1):
        lines = textwrap.wrap(text, chars) or [""]
        if max(width(line) for line in lines) <= points:
            return lines
    return textwrap.wrap(text, 1)


def percent(value: float) -> float:
    return 100.0 * value


MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*")


def marker(index: int) -> str:
    """A marker per series, so series that overlap (equal values) stay visible."""
    return MARKERS[index % len(MARKERS)]


def epoch_ticks(ax: Axes, epochs: Sequence[float]) -> None:
    """Whole-number epoch ticks (every epoch when there are few)."""
    last = int(max(epochs, default=1))
    if last <= 12:
        ax.set_xticks(range(1, last + 1))
        ax.set_xlim(0.5, last + 0.5)
    else:
        ax.xaxis.get_major_locator().set_params(integer=True)
