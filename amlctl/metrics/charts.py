"""Metrics as text (a table with a sparkline per metric) and as a picture (`--plot`).

The sparkline needs nothing but Unicode block characters, so it works in any terminal and
costs no import; the picture needs matplotlib (the `plot` extra), imported only for it.
"""

from __future__ import annotations

import math
import re
import sys
from collections.abc import Sequence
from pathlib import Path

from amlctl.errors import UsageError
from amlctl.providers.base import MetricSeries

BARS = "▁▂▃▄▅▆▇█"
ASCII_BARS = "_.-~=+*#"  # for an output that cannot encode block characters
SPARK_WIDTH = 24
PLOT_EXTRA = "plot"
PLOT_DPI = 100
PLOT_PANEL_INCHES = (6.0, 2.6)  # width, height of one metric's chart
_ESCAPES = re.compile(r"\x1b(?:\[[0-?]*[ -/]*[@-~]|\][^\x07\x1b]*(?:\x07|\x1b\\)?|.)")
_CONTROLS = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def printable(text: str) -> str:
    """A log line or metric name as one safe line: what a `\\r` progress bar shows last,
    without terminal escape sequences (colours, cursor moves) or other control characters,
    which would break the redraw or the terminal."""
    text = text.rstrip("\r").rsplit("\r", 1)[-1]
    return _CONTROLS.sub("?", _ESCAPES.sub("", text))


def fmt(value: float) -> str:
    """A metric value in at most ~7 characters: 0.9805, 1.23e+04, nan."""
    if not math.isfinite(value):
        return str(value)
    return f"{value:.4g}"


def bars_for(encoding: str | None) -> str:
    """The sparkline characters an output with this encoding can show."""
    try:
        BARS.encode(encoding or "ascii")
    except (UnicodeEncodeError, LookupError):
        return ASCII_BARS
    return BARS


def sparkline(values: Sequence[float], width: int = SPARK_WIDTH, bars: str | None = None
              ) -> str:
    """`values` as at most `width` block characters, low to high; a value that is not finite
    is a space. Longer series are shown as the mean of `width` equal buckets. `bars` defaults
    to what stdout can encode."""
    bars = bars or bars_for(sys.stdout.encoding)
    if not values or width <= 0:
        return ""
    if len(values) > width:
        size = len(values) / width
        buckets = [values[int(i * size):max(int((i + 1) * size), int(i * size) + 1)]
                   for i in range(width)]
        values = [_mean(bucket) for bucket in buckets]
    finite = [v for v in values if math.isfinite(v)]
    if not finite:
        return " " * len(values)
    low, high = min(finite), max(finite)
    span = high - low
    top = len(bars) - 1
    return "".join(
        " " if not math.isfinite(v) else bars[round((v - low) / span * top) if span else top // 2]
        for v in values)


def _mean(values: Sequence[float]) -> float:
    finite = [v for v in values if math.isfinite(v)]
    return sum(finite) / len(finite) if finite else math.nan


def table(series: Sequence[MetricSeries], width: int = SPARK_WIDTH) -> list[str]:
    """One line per metric: name, last, min, max, steps (count and range) and a sparkline."""
    if not series:
        return []
    name_width = max(6, *(len(printable(s.name)) for s in series))
    lines = [f"{'METRIC':<{name_width}}  {'LAST':>9}  {'MIN':>9}  {'MAX':>9}  {'STEPS':>5}  "
             f"{'RANGE':<13}  CHART"]
    for s in series:
        steps = f"{s.steps[0]}..{s.steps[-1]}" if len(s.steps) > 1 else str(s.steps[0])
        lines.append(f"{printable(s.name):<{name_width}}  {fmt(s.last):>9}  {fmt(s.minimum):>9}  "
                     f"{fmt(s.maximum):>9}  {len(s.steps):>5}  {steps:<13}  "
                     f"{sparkline(s.values, width)}")
    return lines


def latest(series: Sequence[MetricSeries], limit: int = 3) -> str:
    """`loss=0.0172 accuracy=0.98`: the latest value of the first `limit` metrics (for a
    column of `runs` / `status`); `-` when there is none."""
    if not series:
        return "-"
    shown = " ".join(f"{printable(s.name)}={fmt(s.last)}" for s in series[:limit])
    return shown + (f" (+{len(series) - limit})" if len(series) > limit else "")


def latest_values(series: Sequence[MetricSeries]) -> dict[str, float | None]:
    """The latest value of every metric by name, JSON-ready (NaN as null)."""
    return {s.name: s.last if math.isfinite(s.last) else None for s in series}


def _literal(text: str) -> str:
    """Text matplotlib shows as written (a `$` would start its math mode)."""
    return text.replace("$", r"\$")


def plot(series: Sequence[MetricSeries], path: Path, title: str) -> tuple[int, int]:
    """Draw each metric against its step, one panel each, into a PNG; returns its size in
    pixels (width, height)."""
    if not series:
        raise UsageError("the run has logged no metrics yet: nothing to plot")
    try:
        import matplotlib

        matplotlib.use("Agg")  # files only: no display needed
        import matplotlib.pyplot as plt
    except ImportError:
        raise UsageError("--plot needs matplotlib, which is not installed: "
                         f"pip install 'amlctl[{PLOT_EXTRA}]'") from None
    width, height = PLOT_PANEL_INCHES
    figure, axes = plt.subplots(len(series), 1, squeeze=False,
                                figsize=(width, height * len(series)))
    try:
        for axis, s in zip(axes[:, 0], series, strict=True):
            axis.plot(s.steps, s.values, marker="o" if len(s.steps) < 30 else None,
                      markersize=3)
            axis.set_title(_literal(f"{printable(s.name)} (last {fmt(s.last)})"),
                           fontsize=10)
            axis.set_xlabel("step")
            axis.grid(alpha=0.3)
        figure.suptitle(_literal(printable(title)), fontsize=11)
        figure.tight_layout()
        path.parent.mkdir(parents=True, exist_ok=True)
        figure.savefig(path, dpi=PLOT_DPI, format="png")
        pixels = figure.canvas.get_width_height()
    finally:
        plt.close(figure)
    return int(pixels[0]), int(pixels[1])
