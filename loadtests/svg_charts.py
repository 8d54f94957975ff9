"""Dependency-free inline SVG charts for the load-test report: line, distribution (histogram and CDF) and bar charts.

Every chart is one ``<svg>`` element with a fixed ``viewBox`` (640 wide; the height grows with the legend's rows) that
scales to its container, with axes whose ticks fall on "nice" steps (1, 2 or 5 times a power of ten, or decades on a
log scale), axis titles, a legend, and the Okabe-Ito colour-blind-safe palette (series past the seventh repeat a
colour with another dash pattern). Every text (titles, series and category names) is escaped, so user data such as
``<script>`` renders as text. Degenerate input (no series, no finite value, a single point, all values equal) draws a
chart that says "no data" or a flat line, and never raises: values that are ``None``, NaN, infinite, not numbers, or
not positive on a log axis are gaps.
"""

from __future__ import annotations

import bisect
import html
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

# Okabe & Ito (2008), "Color Universal Design": distinguishable with every common colour-vision deficiency.
# Yellow (#F0E442) is left out: too faint against white.
PALETTE: tuple[str, ...] = ("#0072B2", "#E69F00", "#009E73", "#D55E00", "#CC79A7", "#56B4E9", "#000000")
DASHES: tuple[str, ...] = ("", "6 3", "2 3", "8 3 2 3")  # one more pattern per round through the palette

WIDTH = 640
PLOT_HEIGHT = 240
FONT = "system-ui, -apple-system, 'Segoe UI', Roboto, 'Liberation Sans', 'DejaVu Sans', Arial, sans-serif"
AXIS_COLOUR = "#444"
GRID_COLOUR = "#e3e3e3"
TEXT_COLOUR = "#222"
MUTED_COLOUR = "#666"
ROTATED_LABEL = 120 # the longest a turned category label gets (then cut with an ellipsis, full name on hover)
ROTATED_TITLE = 106 # how far below the plot the x axis title sits under turned labels
MARKER_LIMIT = 40  # points per series up to which each point also gets a marker (and a tooltip)
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")  # not allowed in XML, nor useful in HTML


def esc(text: object) -> str:
    """Text escaped for SVG/HTML element content and attribute values, so user data can never become markup."""
    return html.escape(_CONTROL.sub("", str(text)), quote=True)


def colour(index: int) -> str:
    """The palette colour of the index-th series (cycling)."""
    return PALETTE[index % len(PALETTE)]


def dash(index: int) -> str:
    """The dash pattern of the index-th series: solid for the first round through the palette, then dashed."""
    return DASHES[(index // len(PALETTE)) % len(DASHES)]


def number(value: Any) -> float | None:
    """A finite float from a number (or numeric string), else ``None``: what a chart treats as a gap."""
    if value is None or isinstance(value, bool):
        return None
    try:
        result = float(value)
    except (TypeError, ValueError, OverflowError):
        return None
    return result if math.isfinite(result) else None


# --- ticks -----------------------------------------------------------------------------------------------------------


def nice_step(span: float, target: int = 5) -> float:
    """The tick step (1, 2 or 5 times a power of ten) nearest to cutting ``span`` into ``target`` intervals."""
    if not (math.isfinite(span) and span > 0):
        return 1.0
    raw = span / max(1, target)
    power = 10.0 ** math.floor(math.log10(raw))
    error = raw / power  # in [1, 10): round to 1, 2, 5 or 10 at the geometric midpoints (as d3's ticks do)
    multiple = 10 if error >= math.sqrt(50) else 5 if error >= math.sqrt(10) else 2 if error >= math.sqrt(2) else 1
    return _clean(multiple * power)


def nice_ticks(lo: float, hi: float, target: int = 5) -> list[float]:
    """Evenly spaced ticks on a nice step from at or below ``lo`` to at or above ``hi`` (a range of zero is widened)."""
    lo, hi = _widen(*sorted((lo, hi)))
    step = nice_step(hi - lo, target)
    while True:
        first = math.floor(lo / step + 1e-9)
        last = math.ceil(hi / step - 1e-9)
        if last - first <= target * 1.6:
            return [_clean(i * step) for i in range(first, last + 1)]
        mantissa = round(step / 10.0 ** math.floor(math.log10(step) + 1e-9))
        step = _clean(step * (2.5 if mantissa == 2 else 2))  # the next nice step: 1 -> 2 -> 5 -> 10


def log_ticks(lo: float, hi: float) -> list[float]:
    """Ticks for a log axis covering positive ``lo``..``hi``: 1-2-5 within about two decades, else whole decades."""
    lo, hi = sorted((lo, hi))
    if not (lo > 0 and math.isfinite(hi)):
        return [1.0, 10.0]
    if hi == lo:
        lo, hi = lo / 2, hi * 2
    first, last = math.floor(math.log10(lo) + 1e-9), math.ceil(math.log10(hi) - 1e-9)
    if last - first <= 2:
        candidates = [_clean(m * 10.0**e) for e in range(first, last + 1) for m in (1, 2, 5)]
        below = [t for t in candidates if t <= lo * (1 + 1e-9)]
        above = [t for t in candidates if t >= hi * (1 - 1e-9)]
        start, end = (below[-1] if below else candidates[0]), (above[0] if above else candidates[-1])
        return [t for t in candidates if start <= t <= end]
    every = max(1, math.ceil((last - first) / 7))
    last = first + every * math.ceil((last - first) / every)
    return [_clean(10.0**e) for e in range(first, last + 1, every)]


def format_tick(value: float, step: float | None = None) -> str:
    """One tick label: as many decimals as the step needs (see ``format_ticks``); compact without a step."""
    if step is None or not (step > 0 and math.isfinite(step)):
        return format_compact(value)
    return format_ticks([value, value + step])[0]


def format_ticks(ticks: Sequence[float]) -> list[str]:
    """An axis' labels, alike: the step's decimals, thousands separators, M/G/T past a million, 1e-5 when tiny."""
    ticks = [_clean(t) for t in ticks]
    if len(ticks) < 2:
        return [format_compact(t) for t in ticks]
    step = min(abs(b - a) for a, b in zip(ticks, ticks[1:])) or 1.0
    top = max(abs(t) for t in ticks)
    for limit, suffix in ((1e12, "T"), (1e9, "G"), (1e6, "M")):
        if top >= limit:
            return [_fixed(t / limit, step / limit) + (suffix if t else "") for t in ticks]
    if step < 1e-4 and top < 1e-3:  # tiny: a shared power of ten, the mantissa with the step's decimals
        exponent = math.floor(math.log10(top))
        scale = 10.0**exponent
        return [_fixed(t / scale, step / scale) + f"e{exponent}" if t else "0" for t in ticks]
    return [_fixed(t, step) for t in ticks]


def format_compact(value: float) -> str:
    """A number in at most 4 significant digits: ``0.001``, ``2.5``, ``12,000``, ``3.2M``, ``1e-5``."""
    value = _clean(value)
    if value == 0:
        return "0"
    size = abs(value)
    for limit, suffix in ((1e12, "T"), (1e9, "G"), (1e6, "M")):
        if size >= limit:
            return f"{value / limit:.4g}{suffix}"
    if size < 1e-4:
        mantissa, _, exponent = f"{value:.3g}".partition("e")
        return f"{mantissa}e{int(exponent)}" if exponent else mantissa
    if size >= 1000:
        return f"{value:,.0f}" if size >= 10000 or value == round(value) else f"{value:,.4g}"
    return f"{value:.4g}"


def _fixed(value: float, step: float) -> str:
    decimals = next((d for d in range(0, 13) if abs(round(step, d) - step) <= step * 1e-6), 12)
    text = f"{value:,.{decimals}f}"
    return "0" if text.strip("-0.,") == "" else text


def _clean(value: float) -> float:
    """Rounds away float noise (0.30000000000000004 -> 0.3), and -0.0 to 0.0."""
    if value == 0 or not math.isfinite(value):
        return 0.0 if value == 0 else value
    digits = 12 - int(math.floor(math.log10(abs(value))))
    return round(value, digits) + 0.0


def _widen(lo: float, hi: float) -> tuple[float, float]:
    if hi > lo:
        return lo, hi
    pad = abs(lo) * 0.1 if lo else 1.0
    return lo - pad, hi + pad


# --- axes and the frame ----------------------------------------------------------------------------------------------


@dataclass
class Axis:
    """A mapping from data values to one screen coordinate, with its ticks (linear or log10)."""

    lo: float
    hi: float
    start: float  # screen coordinate of lo
    end: float  # screen coordinate of hi
    ticks: list[float]
    log: bool = False

    def __call__(self, value: float) -> float:
        """The screen coordinate of a data value."""
        if self.log:
            a, b, v = math.log10(self.lo), math.log10(self.hi), math.log10(max(value, 1e-300))
        else:
            a, b, v = self.lo, self.hi, value
        share = (v - a) / (b - a) if b != a else 0.5
        return self.start + share * (self.end - self.start)

    def labels(self) -> list[str]:
        """The tick labels, formatted for the axis' step."""
        if self.log:
            return [format_compact(t) for t in self.ticks]
        return format_ticks(self.ticks)


def make_axis(values: Iterable[float], start: float, end: float, *, log: bool = False, include_zero: bool = False,
              tight: bool = False) -> Axis:
    """An axis spanning the values on nice ticks; ``tight`` keeps the range to the data (plus 2%), not the ticks."""
    finite = [v for v in values if math.isfinite(v) and (v > 0 or not log)]
    if log:
        lo, hi = (min(finite), max(finite)) if finite else (1.0, 10.0)
        ticks = log_ticks(lo, hi)
        return Axis(ticks[0], ticks[-1], start, end, ticks, log=True)
    lo, hi = (min(finite), max(finite)) if finite else (0.0, 1.0)
    if lo == hi == 0:
        hi = 1.0
    if include_zero or (lo > 0 and lo <= hi / 2):
        lo = min(lo, 0.0)
    if include_zero or (hi < 0 and hi >= lo / 2):
        hi = max(hi, 0.0)
    ticks = nice_ticks(lo, hi)
    if tight and hi > lo:
        pad = (hi - lo) * 0.02
        low, high = max(ticks[0], lo - pad), min(ticks[-1], hi + pad)
        if lo >= 0 > low:
            low = 0.0
        inside = [t for t in ticks if low - 1e-9 * (high - low) <= t <= high + 1e-9 * (high - low)]
        if len(inside) >= 2:
            return Axis(low, high, start, end, inside)
    return Axis(ticks[0], ticks[-1], start, end, ticks)


@dataclass
class Frame:
    """The layout of one chart: plot rectangle, legend rows and total height."""

    left: float
    top: float
    right: float
    bottom: float
    height: float
    legend_rows: list[list[tuple[int, str, float]]]  # (series index, label, x offset)
    footnote_y: float


def _text_width(text: str, size: float = 13) -> float:
    return len(text) * size * 0.58


def _truncate(text: str, width: float, size: float = 13, *, middle: bool = False) -> str:
    """The text cut to about ``width`` with an ellipsis: at the end, or in the middle (names that differ at the end)."""
    limit = max(4, int(width / (size * 0.58)))
    if len(text) <= limit:
        return text
    if middle:
        head = (limit - 1) // 2
        return text[:head] + "…" + text[len(text) - (limit - 1 - head):]
    return text[: limit - 1] + "…"


def _layout(labels: Sequence[str], y_labels: Sequence[str], *, right_axis: bool = False, x_rotated: bool = False,
            footnote: bool = False, min_left: float = 0) -> Frame:
    """Places the plot so the y tick labels fit on the left, and wraps the legend into rows under the x axis title."""
    left = max(min_left, 24 + max([_text_width(t, 12) for t in y_labels] + [12]) + 10)
    right = WIDTH - (56 if right_axis else 20)
    top = 46
    bottom = top + PLOT_HEIGHT
    x_title = bottom + (ROTATED_TITLE if x_rotated else 40)
    rows: list[list[tuple[int, str, float]]] = []
    x = 0.0
    for i, label in enumerate(labels):
        text = _truncate(label, 300)
        width = 26 + _text_width(text) + 18
        if not rows or x + width > WIDTH - 40:
            rows.append([])
            x = 0.0
        rows[-1].append((i, text, x))
        x += width
    legend_top = x_title + 14
    footnote_y = legend_top + 20 * len(rows) + 6
    height = footnote_y + (16 if footnote else 0)
    return Frame(left, top, right, bottom, height, rows, footnote_y)


def _open_svg(title: str, frame: Frame, kind: str) -> list[str]:
    label = esc(title or "chart")
    return [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="chart chart-{kind}" viewBox="0 0 {WIDTH} {frame.height:.0f}" '
        f'width="{WIDTH}" height="{frame.height:.0f}" role="img" aria-label="{label}" '
        f'font-family="{esc(FONT)}" font-size="13" fill="{TEXT_COLOUR}">',
        f"<title>{label}</title>",
        f'<rect x="0" y="0" width="{WIDTH}" height="{frame.height:.0f}" fill="#fff"/>',
        f'<text x="{WIDTH / 2:.0f}" y="26" text-anchor="middle" font-size="16" font-weight="600">'
        f"{esc(_truncate(title, WIDTH - 40, 16))}</text>",
    ]


def _y_axis(parts: list[str], frame: Frame, axis: Axis, title: str) -> None:
    for tick, label in zip(axis.ticks, axis.labels()):
        y = axis(tick)
        parts.append(f'<line x1="{frame.left:.1f}" y1="{y:.1f}" x2="{frame.right:.1f}" y2="{y:.1f}" '
                     f'stroke="{GRID_COLOUR}" stroke-width="1"/>')
        parts.append(f'<text x="{frame.left - 6:.1f}" y="{y + 4:.1f}" text-anchor="end" font-size="12" '
                     f'fill="{MUTED_COLOUR}">{esc(label)}</text>')
    middle = (frame.top + frame.bottom) / 2
    x = max(16.0, frame.left - max([_text_width(t, 12) for t in axis.labels()] + [12]) - 24)  # beside the labels
    parts.append(f'<text x="{x:.1f}" y="{middle:.1f}" text-anchor="middle" '
                 f'transform="rotate(-90 {x:.1f} {middle:.1f})">{esc(_truncate(title, PLOT_HEIGHT))}</text>')


def _x_axis(parts: list[str], frame: Frame, axis: Axis, title: str) -> None:
    for tick, label in zip(axis.ticks, axis.labels()):
        x = axis(tick)
        parts.append(f'<line x1="{x:.1f}" y1="{frame.bottom:.1f}" x2="{x:.1f}" y2="{frame.bottom + 5:.1f}" '
                     f'stroke="{AXIS_COLOUR}" stroke-width="1"/>')
        parts.append(f'<text x="{x:.1f}" y="{frame.bottom + 18:.1f}" text-anchor="middle" font-size="12" '
                     f'fill="{MUTED_COLOUR}">{esc(label)}</text>')
    _x_title(parts, frame, title, frame.bottom + 40)


def _x_title(parts: list[str], frame: Frame, title: str, y: float) -> None:
    middle = (frame.left + frame.right) / 2
    parts.append(f'<text x="{middle:.1f}" y="{y:.1f}" text-anchor="middle">{esc(_truncate(title, WIDTH - 80))}</text>')


def _axis_lines(parts: list[str], frame: Frame) -> None:
    parts.append(f'<path d="M{frame.left:.1f} {frame.top:.1f}V{frame.bottom:.1f}H{frame.right:.1f}" fill="none" '
                 f'stroke="{AXIS_COLOUR}" stroke-width="1"/>')


def _legend(parts: list[str], frame: Frame, names: Sequence[str], *, swatch: str = "line") -> None:
    top = frame.footnote_y - 20 * len(frame.legend_rows) - 6
    for r, row in enumerate(frame.legend_rows):
        width = row[-1][2] + 26 + _text_width(row[-1][1]) if row else 0
        x0 = (WIDTH - width) / 2
        y = top + 20 * r + 8
        for i, text, offset in row:
            x = x0 + offset
            full = esc(names[i])
            parts.append(f'<g class="legend-item"><title>{full}</title>')
            if swatch == "box":
                parts.append(f'<rect x="{x:.1f}" y="{y - 6:.1f}" width="18" height="12" fill="{colour(i)}"/>')
            else:
                pattern = f' stroke-dasharray="{dash(i)}"' if dash(i) else ""
                parts.append(f'<line x1="{x:.1f}" y1="{y:.1f}" x2="{x + 20:.1f}" y2="{y:.1f}" stroke="{colour(i)}" '
                             f'stroke-width="2.5"{pattern}/>')
            parts.append(f'<text x="{x + 26:.1f}" y="{y + 4:.1f}">{esc(text)}</text></g>')


def _footnote(parts: list[str], frame: Frame, text: str) -> None:
    parts.append(f'<text x="{WIDTH / 2:.0f}" y="{frame.footnote_y + 8:.1f}" text-anchor="middle" font-size="12" '
                 f'fill="{MUTED_COLOUR}" font-style="italic">{esc(text)}</text>')


def empty_chart(title: str, message: str = "no data", *, kind: str = "empty") -> str:
    """A chart-sized box with the title and a centred message, for a chart with nothing to draw."""
    frame = Frame(40, 46, WIDTH - 20, 46 + PLOT_HEIGHT, 46 + PLOT_HEIGHT + 30, [], 46 + PLOT_HEIGHT + 20)
    parts = _open_svg(title, frame, kind)
    parts.append(f'<rect x="{frame.left}" y="{frame.top}" width="{frame.right - frame.left}" '
                 f'height="{PLOT_HEIGHT}" fill="#fafafa" stroke="{GRID_COLOUR}"/>')
    parts.append(f'<text class="no-data" x="{WIDTH / 2:.0f}" y="{frame.top + PLOT_HEIGHT / 2 + 6:.0f}" '
                 f'text-anchor="middle" font-size="16" fill="{MUTED_COLOUR}">{esc(message)}</text>')
    parts.append("</svg>")
    return "".join(parts)


def _n(text: str, count: int) -> str:
    return f"{count:,} {text}{'' if count == 1 else 's'}"


# --- line chart ------------------------------------------------------------------------------------------------------


def _points(data: Any) -> list[tuple[float | None, float | None]]:
    """``{"x": [...], "y": [...]}``, ``(xs, ys)``-shaped mappings or a sequence of ``(x, y)`` pairs, as pairs."""
    if isinstance(data, Mapping):
        xs, ys = data.get("x"), data.get("y")
        if not isinstance(ys, Sequence) or isinstance(ys, (str, bytes)):
            return []
        if not isinstance(xs, Sequence) or isinstance(xs, (str, bytes)):
            xs = range(len(ys))
        return [(number(x), number(y)) for x, y in zip(xs, ys)]
    if isinstance(data, Sequence) and not isinstance(data, (str, bytes)):
        pairs: list[tuple[float | None, float | None]] = []
        for i, item in enumerate(data):
            if isinstance(item, Sequence) and not isinstance(item, (str, bytes)) and len(item) >= 2:
                pairs.append((number(item[0]), number(item[1])))
            else:
                pairs.append((float(i), number(item)))
        return pairs
    return []


def line_chart(title: str, series: Mapping[str, Any], *, x_label: str = "", y_label: str = "",
               log_y: bool = False) -> str:
    """Named series of (x, y) as lines (markers when few points); None/NaN (and y <= 0 on a log axis) leave gaps."""
    names = [str(name) for name in series]
    points = [_points(data) for data in series.values()]
    hidden = 0
    segments: list[list[list[tuple[float, float]]]] = []
    for pairs in points:
        runs: list[list[tuple[float, float]]] = [[]]
        for x, y in pairs:
            if x is not None and y is not None and log_y and y <= 0:
                hidden += 1
                y = None
            if x is None or y is None:
                if runs[-1]:
                    runs.append([])
                continue
            runs[-1].append((x, y))
        segments.append([run for run in runs if run])
    xs = [x for runs in segments for run in runs for x, _ in run]
    ys = [y for runs in segments for run in runs for _, y in run]
    if not xs:
        return empty_chart(title, "no data" if not hidden else "no data (no positive value for the log scale)",
                           kind="line")
    y_probe = make_axis(ys, 0, 1, log=log_y)
    footnote = f"{_n('value', hidden)} at or below zero not shown on the log scale" if hidden else ""
    frame = _layout(names, y_probe.labels(), footnote=bool(footnote))
    x_axis = make_axis(xs, frame.left, frame.right, tight=True)
    y_axis = make_axis(ys, frame.bottom, frame.top, log=log_y)
    parts = _open_svg(title, frame, "line")
    _y_axis(parts, frame, y_axis, y_label)
    _x_axis(parts, frame, x_axis, x_label)
    _axis_lines(parts, frame)
    for i, runs in enumerate(segments):
        name = esc(names[i])
        pattern = f' stroke-dasharray="{dash(i)}"' if dash(i) else ""
        parts.append(f'<g class="series" data-series="{name}"><title>{name}</title>')
        for run in runs:
            if len(run) > 1:
                path = " ".join(f"{x_axis(x):.1f},{y_axis(y):.1f}" for x, y in run)
                parts.append(f'<polyline points="{path}" fill="none" stroke="{colour(i)}" stroke-width="2" '
                             f'stroke-linejoin="round" stroke-linecap="round"{pattern}/>')
        count = sum(len(run) for run in runs)
        for run in runs:
            if count <= MARKER_LIMIT or len(run) == 1:
                for x, y in run:
                    parts.append(f'<circle cx="{x_axis(x):.1f}" cy="{y_axis(y):.1f}" r="3" fill="{colour(i)}">'
                                 f"<title>{name}: {esc(format_compact(x))}, {esc(format_compact(y))}</title></circle>")
        parts.append("</g>")
    _legend(parts, frame, names)
    if footnote:
        _footnote(parts, frame, footnote)
    parts.append("</svg>")
    return "".join(parts)


# --- distribution chart ----------------------------------------------------------------------------------------------


def histogram_edges(values: Sequence[float], *, log: bool = False, bins: int | None = None) -> list[float]:
    """Shared bin edges on nice boundaries (log-spaced with ``log``) covering every value; at least one bin."""
    finite = [v for v in values if math.isfinite(v) and (v > 0 or not log)]
    if not finite:
        return [1.0, 10.0] if log else [0.0, 1.0]
    lo, hi = min(finite), max(finite)
    target = bins or max(5, min(40, round(math.sqrt(len(finite)) * 1.5)))
    if log:
        if hi == lo:
            return [_clean(lo / 10**0.1), _clean(hi * 10**0.1)]
        decades = math.log10(hi) - math.log10(lo)
        per_decade = next((m for m in (1, 2, 4, 5, 10, 20, 50, 100) if m * decades >= target * 0.7), 100)
        first = math.floor(math.log10(lo) * per_decade + 1e-9)
        last = math.ceil(math.log10(hi) * per_decade - 1e-9)
        last = max(last, first + 1)
        return [_clean(10 ** (k / per_decade)) for k in range(first, last + 1)]
    if hi == lo:
        pad = abs(lo) * 0.05 if lo else 0.5
        return [_clean(lo - pad), _clean(hi + pad)]
    step = nice_step(hi - lo, target)
    first = math.floor(lo / step + 1e-9)
    last = max(math.ceil(hi / step - 1e-9), first + 1)
    return [_clean(k * step) for k in range(first, last + 1)]


def histogram_counts(values: Sequence[float], edges: Sequence[float], *, log: bool = False) -> list[int]:
    """Counts per bin ``[edge_i, edge_i+1)``, the last bin closed; values outside the edges are not counted."""
    counts = [0] * (len(edges) - 1)
    if not counts:
        return counts
    transform = (lambda v: math.log10(v)) if log else (lambda v: v)
    points = [transform(e) for e in edges]
    for v in values:
        if not math.isfinite(v) or (log and v <= 0):
            continue
        t = transform(v)
        if t < points[0] - 1e-12 or t > points[-1] + 1e-12:
            continue
        index = min(max(bisect.bisect_right(points, t) - 1, 0), len(counts) - 1)
        counts[index] += 1
    return counts


def distribution_chart(title: str, series: Mapping[str, Any], *, x_label: str = "", y_label: str = "",
                       log_x: bool = False, bins: int | None = None) -> str:
    """Named value lists as histograms on shared bins (outlined steps) with each one's CDF (dashed, right axis)."""
    names = [str(name) for name in series]
    values: list[list[float]] = []
    hidden = 0
    for data in series.values():
        items = data if isinstance(data, Iterable) and not isinstance(data, (str, bytes, Mapping)) else []
        numbers = [v for v in (number(item) for item in items) if v is not None]
        if log_x:
            hidden += sum(1 for v in numbers if v <= 0)
            numbers = [v for v in numbers if v > 0]
        values.append(numbers)
    everything = [v for vs in values for v in vs]
    if not everything:
        return empty_chart(title, "no data" if not hidden else "no data (no positive value for the log scale)",
                           kind="distribution")
    edges = histogram_edges(everything, log=log_x, bins=bins)
    counts = [histogram_counts(vs, edges, log=log_x) for vs in values]
    labels = [f"{name} (n={len(vs):,})" for name, vs in zip(names, values)]
    y_probe = make_axis([0.0, *[c for cs in counts for c in cs]], 0, 1, include_zero=True)
    notes = ["dashed: cumulative share (right axis)"]
    if hidden:
        notes.append(f"{_n('value', hidden)} at or below zero not shown on the log scale")
    frame = _layout(labels, y_probe.labels(), right_axis=True, footnote=True)
    lo, hi = min(everything), max(everything)
    if log_x:
        ticks = log_ticks(lo / 10, hi * 10) if lo == hi else log_ticks(edges[0], edges[-1])
        x_axis = Axis(min(ticks[0], edges[0]), max(ticks[-1], edges[-1]), frame.left, frame.right, ticks, log=True)
    else:  # all values equal: one narrow bin in the middle of the axis, not a bin the axis' width
        wide = edges
        if lo == hi:
            pad = (edges[-1] - edges[0]) * 5
            wide = [lo - pad, hi + pad]
        x_axis = make_axis(wide, frame.left, frame.right)
    y_axis = make_axis([0.0, *[c for cs in counts for c in cs]], frame.bottom, frame.top, include_zero=True)
    y_axis.ticks = [t for t in y_axis.ticks if t == round(t)] or y_axis.ticks  # counts: whole numbers only
    share = Axis(0.0, 1.0, frame.bottom, frame.top, [0.0, 0.25, 0.5, 0.75, 1.0])
    parts = _open_svg(title, frame, "distribution")
    _y_axis(parts, frame, y_axis, y_label)
    _x_axis(parts, frame, x_axis, x_label)
    for tick in share.ticks:
        parts.append(f'<text x="{frame.right + 6:.1f}" y="{share(tick) + 4:.1f}" font-size="12" '
                     f'fill="{MUTED_COLOUR}">{tick * 100:.0f}%</text>')
    parts.append(f'<path d="M{frame.left:.1f} {frame.top:.1f}V{frame.bottom:.1f}H{frame.right:.1f}V{frame.top:.1f}" '
                 f'fill="none" stroke="{AXIS_COLOUR}" stroke-width="1"/>')
    screen = [x_axis(e) for e in edges]
    for i, cs in enumerate(counts):
        name = esc(names[i])
        parts.append(f'<g class="series" data-series="{name}"><title>{esc(labels[i])}</title>')
        used = [k for k, c in enumerate(cs) if c]
        if used:  # the outline from the series' first non-empty bin to its last
            first, last = used[0], used[-1]
            d = [f"M{screen[first]:.1f} {y_axis(0):.1f}"]
            for k in range(first, last + 1):
                d.append(f"V{y_axis(cs[k]):.1f}H{screen[k + 1]:.1f}")
            d.append(f"V{y_axis(0):.1f}Z")
            parts.append(f'<path d="{"".join(d)}" fill="{colour(i)}" fill-opacity="0.18" stroke="{colour(i)}" '
                         f'stroke-width="1.8"/>')
            total, running = sum(cs), 0
            cdf = [f"{frame.left:.1f},{share(0):.1f}", f"{screen[first]:.1f},{share(0):.1f}"]
            for k in range(first, last + 1):
                running += cs[k]
                cdf.append(f"{screen[k + 1]:.1f},{share(running / total):.1f}")
            cdf.append(f"{frame.right:.1f},{share(1):.1f}")
            parts.append(f'<polyline points="{" ".join(cdf)}" fill="none" stroke="{colour(i)}" stroke-width="1.5" '
                         f'stroke-dasharray="5 3"/>')
        parts.append("</g>")
    _legend(parts, frame, labels, swatch="box")
    _footnote(parts, frame, "; ".join(notes))
    parts.append("</svg>")
    return "".join(parts)


# --- bar chart -------------------------------------------------------------------------------------------------------


def bar_chart(title: str, series: Mapping[str, Any], *, x_label: str = "", y_label: str = "",
              log_y: bool = False) -> str:
    """Grouped bars: categories along x (in first-seen order), one bar per series; None/NaN draw no bar."""
    names = [str(name) for name in series]
    tables: list[dict[str, float | None]] = []
    categories: dict[str, None] = {}
    for data in series.values():
        table: dict[str, float | None] = {}
        if isinstance(data, Mapping):
            for category, value in data.items():
                table[str(category)] = number(value)
                categories.setdefault(str(category), None)
        tables.append(table)
    hidden = 0
    if log_y:
        for table in tables:
            for key, value in table.items():
                if value is not None and value <= 0:
                    hidden += 1
                    table[key] = None
    values = [v for table in tables for v in table.values() if v is not None]
    if not values:
        return empty_chart(title, "no data" if not hidden else "no data (no positive value for the log scale)",
                           kind="bar")
    y_probe = make_axis(values, 0, 1, log=log_y, include_zero=not log_y)
    cats = list(categories)
    group = (WIDTH - 100) / max(1, len(cats))
    # Many categories whose names do not fit under their bars turn their labels; a few are cut to fit instead.
    rotated = len(cats) > 6 and max(_text_width(c, 12) for c in cats) > group - 6
    footnote = f"{_n('value', hidden)} at or below zero not shown on the log scale" if hidden else ""
    # A turned label reaches down and to the left of its bar: the first one must not leave the chart.
    reach = min(ROTATED_LABEL, max(_text_width(c, 12) for c in cats)) * math.cos(math.radians(40)) + 8
    frame = _layout(names, y_probe.labels(), x_rotated=rotated, footnote=bool(footnote),
                    min_left=reach - (WIDTH - 100) / len(cats) / 2 if rotated else 0)
    y_axis = make_axis(values, frame.bottom, frame.top, log=log_y, include_zero=not log_y)
    parts = _open_svg(title, frame, "bar")
    _y_axis(parts, frame, y_axis, y_label)
    group = (frame.right - frame.left) / len(cats)
    bar = group * 0.8 / max(1, len(names))
    base = y_axis(y_axis.lo) if log_y else y_axis(0.0)
    for c, category in enumerate(cats):
        centre = frame.left + group * (c + 0.5)
        label = esc(_truncate(category, ROTATED_LABEL if rotated else group - 4, 12, middle=True))
        if rotated:
            parts.append(f'<g><title>{esc(category)}</title><text x="{centre:.1f}" y="{frame.bottom + 14:.1f}" '
                         f'text-anchor="end" font-size="12" fill="{MUTED_COLOUR}" '
                         f'transform="rotate(-40 {centre:.1f} {frame.bottom + 14:.1f})">{label}</text></g>')
        else:
            parts.append(f'<g><title>{esc(category)}</title><text x="{centre:.1f}" y="{frame.bottom + 18:.1f}" '
                         f'text-anchor="middle" font-size="12" fill="{MUTED_COLOUR}">{label}</text></g>')
        for i, table in enumerate(tables):
            value = table.get(category)
            if value is None:
                continue
            x = centre - group * 0.4 + bar * i
            top, bottom = sorted((y_axis(value), base))
            parts.append(f'<rect x="{x + 1:.1f}" y="{top:.1f}" width="{max(bar - 2, 1):.1f}" '
                         f'height="{max(bottom - top, 0.5):.1f}" fill="{colour(i)}">'
                         f"<title>{esc(names[i])}, {esc(category)}: {esc(format_compact(value))}</title></rect>")
    _x_title(parts, frame, x_label, frame.bottom + (ROTATED_TITLE if rotated else 40))
    if not log_y and y_axis.lo < 0:
        parts.append(f'<line x1="{frame.left:.1f}" y1="{base:.1f}" x2="{frame.right:.1f}" y2="{base:.1f}" '
                     f'stroke="{AXIS_COLOUR}" stroke-width="1"/>')
    _axis_lines(parts, frame)
    _legend(parts, frame, names, swatch="box")
    if footnote:
        _footnote(parts, frame, footnote)
    parts.append("</svg>")
    return "".join(parts)
