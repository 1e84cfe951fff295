"""Pictures of attributions, one kind per modality (``Modality.picture``), readable at a glance.

- heatmaps (image): the inputs over their attribution heat maps (red: for the predicted class,
  blue: against; each panel on its own symmetric scale), label and prediction on top.
- bars (tabular): mean |attribution| per feature (top 20), the sensitive columns highlighted.
- tokens (text): tokens coloured by attribution (a PNG and an HTML page).
- signals (series): each signal over a band shaded by its attribution.

Colour is always a diverging map centred at 0. Figures are built with matplotlib's object
API (no pyplot): nothing global changes, no backend is chosen, any thread can draw.
"""

from __future__ import annotations

import html
import io
import math
from collections.abc import Callable
from pathlib import Path

import matplotlib
import numpy as np
from matplotlib import colors
from matplotlib.cm import ScalarMappable
from matplotlib.figure import Figure
from matplotlib.patches import Patch

from dq.data_records import DatasetMeta
from dq.modalities import Picture, modality_of
from dq.rundir.write import atomic_write, write_text

CMAP = "RdBu_r"  # blue < 0 < red
SENSITIVE_COLOR = "#e66101"
PLAIN_COLOR = "#5e81ac"
MAX_IMAGES = 8
MAX_SERIES = 6
MAX_TEXT_ROWS = 10
TOP_FEATURES = 20


def draw(out_dir: Path, method: str, arrays: dict[str, np.ndarray], meta: DatasetMeta) -> list[Path]:
    """Write ``<method>.png`` (and ``<method>.html`` for tokens); return the paths written."""
    picture = modality_of(meta).picture
    fig = DRAWERS[picture](method, arrays, meta)
    png = out_dir / f"{method}.png"
    save_figure(fig, png)
    written = [png]
    if picture is Picture.tokens:
        page = out_dir / f"{method}.html"
        write_text(page, text_html(method, arrays, meta))
        written.append(page)
    return written


def save_figure(fig: Figure, path: Path) -> None:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
    atomic_write(path, lambda tmp: tmp.write_bytes(buffer.getvalue()))


def _name(meta: DatasetMeta, index: int) -> str:
    return meta.class_names[index] if 0 <= index < len(meta.class_names) else str(index)


def _title(meta: DatasetMeta, label: int, prediction: int) -> tuple[str, str]:
    """'label x · pred y' and a colour: black when right, red when wrong."""
    right = label == prediction
    return f"label {_name(meta, label)}\npred {_name(meta, prediction)}", "black" if right else "#c0392b"


def _reading(attributions: np.ndarray, what: str) -> str:
    """How to read the colours: signed attributions, or unsigned ones (saliency)."""
    if float(np.min(attributions)) >= 0:
        return f"|attribution| (unsigned): the redder, the more the {what} matter"
    return f"red {what} push towards the predicted class, blue {what} away"


def _pm_colorbar(fig: Figure, axes: list, label: str) -> None:
    """One colour bar for panels that are each scaled to their own max |attribution|."""
    mappable = ScalarMappable(norm=colors.Normalize(-1, 1), cmap=CMAP)
    bar = fig.colorbar(mappable, ax=axes, shrink=0.7, pad=0.015, aspect=20, ticks=[-1, 0, 1])
    bar.ax.set_yticklabels(["−max", "0", "+max"], fontsize=8)
    bar.set_label(label, fontsize=8)


def display_bound(values: np.ndarray) -> float:
    """The |attribution| that gets full colour: the 99th percentile of |values| (a few
    extreme pixels would otherwise wash the rest out), the max if that is 0."""
    magnitude = np.abs(values)
    return float(np.percentile(magnitude, 99)) or float(magnitude.max()) or 1.0


def heat_rgba(heat: np.ndarray) -> np.ndarray:
    """RGBA of a 2-d attribution map: diverging colour centred at 0, opacity growing with
    |attribution| (on the map's own symmetric scale, see ``display_bound``), so the input
    shows where the attribution is small."""
    scaled = np.clip(heat / display_bound(heat), -1, 1)
    rgba = matplotlib.colormaps[CMAP](0.5 + 0.5 * scaled)
    rgba[..., 3] = np.clip(np.abs(scaled), 0, 1) ** 0.6
    return rgba


# --------------------------------------------------------------------------- image
def _image(method: str, arrays: dict[str, np.ndarray], meta: DatasetMeta) -> Figure:
    inputs, attributions = arrays["inputs"], arrays["attributions"]
    k = min(MAX_IMAGES, len(inputs))
    fig = Figure(figsize=(1.6 * k + 1.2, 3.6), layout="constrained")
    axes = fig.subplots(2, k, squeeze=False)
    for j in range(k):
        image = np.transpose(inputs[j], (1, 2, 0))
        gray = image.mean(axis=2)
        heat = attributions[j].sum(axis=0)
        title, color = _title(meta, int(arrays["labels"][j]), int(arrays["predictions"][j]))
        top, bottom = axes[0, j], axes[1, j]
        if image.shape[2] == 3:
            top.imshow(np.clip(image, 0, 1), interpolation="nearest")
        else:
            top.imshow(gray, cmap="gray", vmin=0, vmax=1, interpolation="nearest")
        top.set_title(title, fontsize=9, color=color)
        bottom.imshow(gray, cmap="gray", vmin=-0.3, vmax=2.2, interpolation="nearest")  # dimmed input
        bottom.imshow(heat_rgba(heat), interpolation="nearest")
        for ax in (top, bottom):
            ax.set_xticks([])
            ax.set_yticks([])
    axes[0, 0].set_ylabel("input", fontsize=9)
    axes[1, 0].set_ylabel(method, fontsize=9)
    _pm_colorbar(fig, axes.ravel().tolist(), "attribution (each panel on its own scale)")
    fig.suptitle(f"{method} on {meta.name}: {_reading(attributions, 'pixels')}", fontsize=10)
    return fig


# --------------------------------------------------------------------------- tabular
def _tabular(method: str, arrays: dict[str, np.ndarray], meta: DatasetMeta) -> Figure:
    attributions = arrays["attributions"]
    importance = np.abs(attributions).mean(axis=0)
    names = list(meta.feature_names) or [f"feature {i}" for i in range(importance.shape[0])]
    order = np.argsort(importance)[::-1][:TOP_FEATURES][::-1]  # largest on top
    sensitive = set(meta.sensitive_columns)
    fig = Figure(figsize=(7.5, 0.28 * len(order) + 1.4))
    ax = fig.subplots()
    bar_colors = [SENSITIVE_COLOR if i in sensitive else PLAIN_COLOR for i in order]
    ax.barh(range(len(order)), importance[order], color=bar_colors)
    ax.set_yticks(range(len(order)))
    ax.set_yticklabels([names[i] for i in order], fontsize=8)
    ax.set_xlabel(f"mean |attribution| over {len(attributions)} test examples", fontsize=9)
    ax.set_title(f"{method} on {meta.name}: top {len(order)} of {len(names)} features", fontsize=10)
    ax.spines[["top", "right"]].set_visible(False)
    if sensitive:
        magnitude = np.abs(attributions)
        totals = magnitude.sum(axis=1)
        shares = magnitude[:, sorted(sensitive)].sum(axis=1)[totals > 0] / totals[totals > 0]
        share = float(shares.mean()) if len(shares) else float("nan")  # as explain/<method>/sensitive_share
        shown = sensitive & set(order.tolist())
        label = f"sensitive attribute: {share:.1%} of |attribution| (mean over examples){'' if shown else ', not in the top'}"
        ax.legend(handles=[Patch(color=SENSITIVE_COLOR, label=label)], fontsize=8, loc="lower right")
    return fig


# --------------------------------------------------------------------------- text
def _tokens(arrays: dict[str, np.ndarray], meta: DatasetMeta, j: int) -> tuple[list[str], np.ndarray]:
    real = arrays["inputs"][j] != meta.pad_index
    return [str(t) for t in arrays["tokens"][j][real]], arrays["attributions"][j][real]


def _text(method: str, arrays: dict[str, np.ndarray], meta: DatasetMeta) -> Figure:
    """Tokens laid out in DejaVu Sans Mono (matplotlib's own font: every character is
    0.602 em wide, so the layout needs no renderer), each on a box coloured by its
    attribution, wrapped at the figure's width."""
    font, fig_width, axes_width = 9.0, 11.0, 0.98
    width = int(fig_width * 72 * axes_width / (0.602 * font))  # characters per line
    rows = []
    for j in range(min(MAX_TEXT_ROWS, len(arrays["inputs"]))):
        tokens, values = _tokens(arrays, meta, j)
        lines, line, used = [], [], 0
        for token, value in zip(tokens, values, strict=True):
            if used + len(token) > width and line:
                lines.append(line)
                line, used = [], 0
            line.append((used, token, value))
            used += len(token) + 1
        lines.append(line)
        rows.append((j, lines, float(np.abs(values).max()) if len(values) else 1.0))
    line_count = sum(len(lines) + 1 for _, lines, _ in rows)
    fig = Figure(figsize=(fig_width, 0.24 * line_count + 0.6))
    ax = fig.add_axes((0.01, 0.0, axes_width, 0.94))
    ax.set_xlim(0, width)
    ax.set_ylim(line_count, 0)
    ax.axis("off")
    cmap = matplotlib.colormaps[CMAP]
    y = 0.0
    for j, lines, bound in rows:
        title, color = _title(meta, int(arrays["labels"][j]), int(arrays["predictions"][j]))
        ax.text(0, y + 0.5, f"#{j}  " + title.replace("\n", " · "), fontsize=8, color=color, va="center", weight="bold")
        y += 1
        for line in lines:
            for x, token, value in line:
                scaled = value / (bound or 1.0)
                ax.text(
                    x,
                    y + 0.5,
                    token,
                    fontsize=font,
                    family="DejaVu Sans Mono",
                    va="center",
                    color="white" if abs(scaled) > 0.6 else "black",
                    bbox={"boxstyle": "square,pad=0.12", "facecolor": cmap(0.5 + 0.5 * scaled), "edgecolor": "none"},
                )
            y += 1
    reading = _reading(arrays["attributions"], "tokens")
    fig.suptitle(f"{method} on {meta.name}: {reading}; each example on its own scale", fontsize=10)
    return fig


def text_html(method: str, arrays: dict[str, np.ndarray], meta: DatasetMeta) -> str:
    """Every explained example as a line of coloured tokens (hover: the value)."""
    cmap = matplotlib.colormaps[CMAP]
    body = []
    for j in range(len(arrays["inputs"])):
        tokens, values = _tokens(arrays, meta, j)
        bound = float(np.abs(values).max()) if len(values) else 1.0
        spans = []
        for token, value in zip(tokens, values, strict=True):
            rgb = colors.to_hex(cmap(0.5 + 0.5 * value / (bound or 1.0)))
            spans.append(f'<span style="background:{rgb}" title="{value:+.4f}">{html.escape(token)}</span>')
        label, prediction = int(arrays["labels"][j]), int(arrays["predictions"][j])
        mark = "" if label == prediction else ' class="wrong"'
        body.append(
            f"<p><b{mark}>#{j} label {html.escape(_name(meta, label))} · "
            f"pred {html.escape(_name(meta, prediction))}</b><br>{' '.join(spans)}</p>"
        )
    return (
        "<!doctype html>\n<html><head><meta charset='utf-8'>"
        f"<title>{html.escape(method)} on {html.escape(meta.name)}</title>"
        "<style>body{font-family:sans-serif;max-width:60em;margin:2em auto;line-height:1.9}"
        "span{padding:1px 2px;border-radius:2px}.wrong{color:#c0392b}</style></head><body>"
        f"<h2>{html.escape(method)} on {html.escape(meta.name)}</h2>"
        "<p>Red tokens push towards the predicted class, blue tokens away; each line is scaled "
        "to its own largest |attribution|. Hover a token for its value.</p>\n" + "\n".join(body) + "\n</body></html>\n"
    )


# --------------------------------------------------------------------------- series
def _series(method: str, arrays: dict[str, np.ndarray], meta: DatasetMeta) -> Figure:
    inputs, attributions = arrays["inputs"], arrays["attributions"]
    k = min(MAX_SERIES, len(inputs))
    cols = 2 if k > 1 else 1
    rows = math.ceil(k / cols)
    fig = Figure(figsize=(6 * cols + 1, 2.2 * rows + 0.7), layout="constrained")
    axes = fig.subplots(rows, cols, squeeze=False)
    for j in range(rows * cols):
        ax = axes[j // cols, j % cols]
        if j >= k:
            ax.axis("off")
            continue
        signal, heat = inputs[j], attributions[j].sum(axis=0)
        steps = signal.shape[-1]
        low, high = float(signal.min()), float(signal.max())
        pad = 0.1 * (high - low or 1.0)
        ax.imshow(
            np.clip(heat / display_bound(heat), -1, 1)[None, :],
            cmap=CMAP,
            vmin=-1,
            vmax=1,
            aspect="auto",
            extent=(-0.5, steps - 0.5, low - pad, high + pad),
            alpha=0.8,
            interpolation="nearest",
        )
        for channel in signal:
            ax.plot(np.arange(steps), channel, color="black", linewidth=1.2)
        title, color = _title(meta, int(arrays["labels"][j]), int(arrays["predictions"][j]))
        ax.set_title(f"#{j}  " + title.replace("\n", " · "), fontsize=9, color=color)
        ax.tick_params(labelsize=7)
        ax.set_xlim(-0.5, steps - 0.5)
        ax.set_ylim(low - pad, high + pad)
    _pm_colorbar(fig, axes.ravel().tolist(), "attribution (each panel on its own scale)")
    fig.suptitle(f"{method} on {meta.name}: {_reading(attributions, 'steps')}", fontsize=10)
    return fig


Drawer = Callable[[str, dict[str, np.ndarray], DatasetMeta], Figure]
DRAWERS: dict[Picture, Drawer] = {
    Picture.heatmaps: _image,
    Picture.bars: _tabular,
    Picture.tokens: _text,
    Picture.signals: _series,
}
