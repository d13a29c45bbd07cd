"""Sparklines, the metrics table and --plot."""

from __future__ import annotations

import math
import struct
import subprocess
import sys
from pathlib import Path

import pytest

from amlctl.errors import UsageError
from amlctl.metrics import charts
from amlctl.providers.base import MetricSeries

LOSS = MetricSeries("loss", (10, 20, 30, 40), (2.0, 1.0, 0.5, 0.25))
ACCURACY = MetricSeries("accuracy", (40,), (0.93,))


def png_size(path: Path) -> tuple[int, int]:
    """Width and height from a PNG's IHDR chunk (read here, not by the code under test)."""
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    assert data[12:16] == b"IHDR"
    width, height = struct.unpack(">II", data[16:24])
    return width, height


def test_sparkline_maps_values_to_blocks_low_to_high() -> None:
    def spark(values: list[float]) -> str:
        return charts.sparkline(values, bars=charts.BARS)

    assert spark([0, 1, 2, 3, 4, 5, 6, 7]) == "▁▂▃▄▅▆▇█"
    assert spark([3, 1, 2]) == "█▁▅"
    assert spark([5, 5, 5]) == "▄▄▄"  # flat: mid-height, not an error
    assert spark([1, math.nan, 3]) == "▁ █"
    assert spark([]) == ""


def test_an_output_that_cannot_encode_blocks_gets_ascii() -> None:
    assert charts.bars_for("utf-8") == charts.BARS
    assert charts.bars_for("ascii") == charts.bars_for("latin-1") == charts.ASCII_BARS
    assert charts.sparkline([0, 7], bars=charts.ASCII_BARS) == "_#"


def test_a_long_series_is_bucketed_to_the_width() -> None:
    values = [float(v) for v in range(1000)]
    line = charts.sparkline(values, width=10, bars=charts.BARS)
    assert len(line) == 10
    assert line[0] == "▁" and line[-1] == "█"
    assert list(line) == sorted(line)  # still rising


def test_table_shows_last_min_max_steps_and_chart() -> None:
    header, accuracy, loss = charts.table([ACCURACY, LOSS])
    assert header.split() == ["METRIC", "LAST", "MIN", "MAX", "STEPS", "RANGE", "CHART"]
    assert accuracy.split() == ["accuracy", "0.93", "0.93", "0.93", "1", "40", "▄"]
    assert loss.split() == ["loss", "0.25", "0.25", "2", "4", "10..40", "█▄▂▁"]


def test_latest_column() -> None:
    assert charts.latest([]) == "-"
    assert charts.latest([ACCURACY, LOSS]) == "accuracy=0.93 loss=0.25"
    many = [MetricSeries(f"m{i}", (0,), (float(i),)) for i in range(5)]
    assert charts.latest(many) == "m0=0 m1=1 m2=2 (+2)"


def test_plot_writes_a_png_of_one_panel_per_metric(tmp_path: Path) -> None:
    one = tmp_path / "one.png"
    two = tmp_path / "sub" / "two.png"
    assert charts.plot([LOSS], one, "run") == png_size(one)
    assert charts.plot([ACCURACY, LOSS], two, "run") == png_size(two)
    (w1, h1), (w2, h2) = png_size(one), png_size(two)
    assert w1 == w2 == 600
    assert h2 == 2 * h1  # one panel per metric
    assert two.stat().st_size > 10_000  # drawn, not an empty canvas


def test_plot_shows_odd_names_as_written(tmp_path: Path) -> None:
    odd = MetricSeries(r"cost $\frac$", (1, 2), (1.0, 0.5))  # bad math for matplotlib
    out = tmp_path / "odd.png"
    assert charts.plot([odd], out, "run $1") == png_size(out)


def test_plot_of_no_metrics_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="no metrics"):
        charts.plot([], tmp_path / "x.png", "run")
    assert not (tmp_path / "x.png").exists()


def test_plot_without_matplotlib_names_the_extra(tmp_path: Path) -> None:
    code = (
        "import sys\n"
        "sys.modules['matplotlib'] = None  # as if not installed\n"
        "from pathlib import Path\n"
        "from amlctl.errors import UsageError\n"
        "from amlctl.metrics import charts\n"
        "from amlctl.providers.base import MetricSeries\n"
        "try:\n"
        "    charts.plot([MetricSeries('loss', (1,), (0.5,))], Path(sys.argv[1]), 'r')\n"
        "except UsageError as err:\n"
        "    print(err)\n")
    out = tmp_path / "x.png"
    done = subprocess.run([sys.executable, "-c", code, str(out)], capture_output=True,
                          text=True, timeout=60, check=True)
    assert "pip install 'amlctl[plot]'" in done.stdout
    assert not out.exists()
