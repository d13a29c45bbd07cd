"""The live view's text: one frame (terminal) and one plain line (logs)."""

from __future__ import annotations

from amlctl.metrics.watch import Snapshot, elapsed, frame, plain_line
from amlctl.providers.base import MetricSeries, RoleStatus, RunInfo

STARTED = 1_700_000_000.0


def run(status: str = "Running", ended: float | None = None,
        error: str | None = None) -> RunInfo:
    return RunInfo(id="exp_1_abc", name="train", experiment="exp", spec_hash="h",
                   status=status, compute="cpu", created_at=STARTED - 5, started_at=STARTED,
                   ended_at=ended, error=error)


ROLES = [RoleStatus("ps:0", "Running", "serving"),
         RoleStatus("worker:0", "Running", "step=10 loss=0.5"),
         RoleStatus("worker:1", "Completed", "done", 0)]
LOSS = MetricSeries("loss", (1, 2, 3), (1.0, 0.5, 0.25))


def test_elapsed_counts_from_start_to_end_or_now() -> None:
    assert elapsed(run(), STARTED + 3725) == "1:02:05"
    assert elapsed(run("Completed", ended=STARTED + 61), STARTED + 9999) == "0:01:01"


def test_frame_lists_roles_and_metrics() -> None:
    lines = frame(Snapshot(run(), ROLES, [LOSS]), STARTED + 42)
    assert lines[0] == "Run exp_1_abc (train)  Running  elapsed 0:00:42"
    assert [line.split()[:2] for line in lines[1:4]] == [
        ["ps:0", "Running"], ["worker:0", "Running"], ["worker:1", "Completed"]]
    assert lines[2].endswith("step=10 loss=0.5")
    assert lines[4] == "Metrics:"
    assert lines[5].split()[:4] == ["loss", "0.25", "step", "3"]


def test_frame_fits_the_terminal() -> None:
    roles = [RoleStatus(f"worker:{i}", "Running", "x" * 300) for i in range(10)]
    lines = frame(Snapshot(run("Failed", ended=STARTED + 1, error="worker:3 exited\nmore"),
                           roles, [LOSS]), STARTED, width=60, height=6)
    assert len(lines) == 6
    assert all(len(line) <= 60 for line in lines)
    # header, 10 roles, "Metrics:", loss, error: 14 lines, 5 shown
    assert lines[-1].startswith("  ... 9 more lines")


def test_plain_line_has_states_and_latest_values() -> None:
    line = plain_line(Snapshot(run(), ROLES, [LOSS]), STARTED + 2)
    assert line.split("  ")[1:] == [
        "Running 0:00:02", "ps:0 Running, worker:0 Running, worker:1 Completed", "loss=0.25"]


def test_what_a_run_writes_cannot_drive_the_terminal() -> None:
    roles = [RoleStatus("worker:0", "Running",
                        "\x1b[31mred\x1b[0m 10%\r 50%\r\x1b]0;title\x07 90% \x1b[2J\x07done")]
    odd = MetricSeries("loss\x1b[2Kx\ty", (1,), (0.5,))
    snap = Snapshot(run(), roles, [odd])
    lines = frame(snap, STARTED)
    text = "\n".join(lines) + plain_line(snap, STARTED)
    assert "\x1b" not in text and "\r" not in text and "\x07" not in text
    assert lines[1].split("Running", 1)[1].strip() == "90% ?done"  # the bar's last state
    assert lines[3].split()[0] == "lossx?y"
