"""What `masnn live` shows: the rich dashboard, the summary table, one line per prediction off a terminal, and
the optional OpenCV window with the events the network sees."""
from __future__ import annotations

import os
import sys
import time
from typing import TYPE_CHECKING

import numpy as np

from masnn.calibration import uncertain_text
from masnn.pictures import contact_sheet

if TYPE_CHECKING:
    from masnn.live.framer import LiveWindow


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f} ms"


def _count(value: float) -> str:
    for limit, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(value) >= limit:
            return f"{value / limit:.2f} {suffix}"
    return f"{value:.0f}"


def render_dashboard(figures: dict):
    """The rich renderable of one snapshot()."""
    from rich.console import Group
    from rich.panel import Panel
    from rich.progress_bar import ProgressBar
    from rich.table import Table
    from rich.text import Text

    actions = Table.grid(padding=(0, 2))
    if figures.get("current_class") == "uncertain" and figures["current"]:
        top = figures["current"][0]
        actions.add_row(f"[bold yellow]{answer_label(figures['current_class'], top)}[/]")
    for rank, entry in enumerate(figures["current"]):
        style = "bold green" if rank == 0 and figures.get("current_class") != "uncertain" else "dim"
        actions.add_row(f"[{style}]{entry['class']}[/]", ProgressBar(total=1.0, completed=entry["probability"], width=30),
                        f"{entry['probability']:.2f}")
    if not figures["current"]:
        actions.add_row("[dim]waiting for the first window[/]")
    recent = "  ".join(f"{run['class']} ({run['to_s'] - run['from_s'] + figures['model']['stride_us'] / 1e6:.1f} s)"
                       for run in reversed(figures["recent_actions"])) or "-"
    grid = Table.grid(padding=(0, 2))
    sensor = "x".join(map(str, figures["sensor"])) if figures["sensor"] else "?"
    # rows wrap (a long path folds) where a title would be cut
    grid.add_row("source", Text(f"{figures['source']} ({sensor})", overflow="fold"))
    grid.add_row("status", Text(figures["status"], overflow="fold"))
    grid.add_row("last actions", recent)
    grid.add_row("events/s", f"{_count(figures['events_per_s'])}  (total {_count(figures['events'])})")
    grid.add_row("spikes/s", f"{_count(figures['spikes_per_s'])}  (in the last window)")
    energy = figures["energy_per_inference_uj"]
    grid.add_row("energy/inference", "-" if energy is None else f"{energy:.2f} µJ")
    threshold = figures.get("uncertain_threshold")
    grid.add_row("uncertain below", "no calibrated threshold" if threshold is None else f"{100 * threshold:.0f} % confidence")
    grid.add_row("latency", f"p50 {_ms(figures['latency_ms']['p50'])}  p99 {_ms(figures['latency_ms']['p99'])}  "
                            f"(model p50 {_ms(figures['model_latency_ms']['p50'])})")
    grid.add_row("predictions", f"{figures['predictions']}  ({figures['predictions_per_s']:.1f}/s)")
    dropped = figures["dropped_windows"]
    style = "bold red" if dropped else "green"
    grid.add_row("data dropped", f"[{style}]{dropped} of {figures['windows']} windows[/], "
                                 f"{_count(figures['unclassified_events'])} events in no classified window")
    if figures["lag_s"] is not None:
        grid.add_row("stream lag", f"{1e3 * figures['lag_s']:.0f} ms (max {1e3 * figures['max_lag_s']:.0f} ms)")
    grid.add_row("reconnects", str(figures["reconnects"]))
    damaged = figures["damaged_packets"]
    grid.add_row("damaged packets", f"[{'bold red' if damaged else 'green'}]{damaged} skipped[/]")
    for notice in figures["notices"][-2:]:
        grid.add_row("[yellow]" + notice["event"] + "[/]", _notice_text(notice))
    model = figures["model"]
    # short, so that no terminal cuts them: the source and the full status are rows above
    title = f"masnn live · {figures['status'].split(' (')[0].split(';')[0]}"
    subtitle = f"T {model['T']} x {model['dt_us'] / 1000:g} ms = {model['window_us'] / 1000:g} ms, every {model['stride_us'] / 1000:g} ms · Ctrl-C ends"
    return Panel(Group(actions, "", grid), title=title, subtitle=subtitle)


def notice_line(notice: dict) -> str:
    """A notice as one line, where the output is no terminal."""
    return f"{notice['event']}: {_notice_text(notice)}"


def _notice_text(notice: dict) -> str:
    when = time.strftime("%H:%M:%S", time.localtime(notice["wall_time"]))
    if notice["event"] == "reconnect":
        return f"{when} back after {notice['offline_s']:.1f} s ({notice['attempts']} attempts)"
    if notice["event"] == "damaged-packet":
        return f"{when} skipped {notice['skipped']} damaged packet{'s' if notice['skipped'] > 1 else ''} ({notice['reason']})"
    return f"{when} {notice.get('reason', '')}"


def summary_table(summary: dict):
    from rich.table import Table

    table = Table(title=f"masnn live: {summary['source']}" + (" (interrupted)" if summary["interrupted"] else ""), show_header=False)
    rows = [
        ("predictions", f"{summary['predictions']} in {summary['wall_s']:.1f} s ({summary['predictions_per_s']:.1f}/s)"),
        ("dropped windows", f"{summary['dropped_windows']} of {summary['windows']} "
                            f"({_count(summary['unclassified_events'])} events in no classified window)"),
        ("events", f"{summary['events']:,} ({_count(summary['events_per_s_mean'])}/s while streaming)"),
        ("latency, event to prediction", f"p50 {_ms(summary['latency_ms']['p50'])}, p99 {_ms(summary['latency_ms']['p99'])}"),
        ("model latency", f"p50 {_ms(summary['model_latency_ms']['p50'])}, p99 {_ms(summary['model_latency_ms']['p99'])}"),
        ("energy per inference", "-" if summary["energy_per_inference_mean_uj"] is None else f"{summary['energy_per_inference_mean_uj']:.2f} µJ"),
        ("reconnects", str(summary["reconnects"])),
        ("damaged packets", f"{summary['damaged_packets']} skipped"),
    ]
    for name, value in rows:
        table.add_row(name, value)
    return table


def answer_label(label: str | None, top: dict) -> str:
    """The answer as a person reads it: the class, or "uncertain (top guess: X, 31 %)"."""
    if label == "uncertain":
        return uncertain_text(top["class"], top["probability"])
    return top["class"]


def prediction_line(record: dict) -> str:
    """One line per prediction where the output is no terminal (a pipe, a file)."""
    top = record["top_k"][0]
    answer = answer_label(record.get("class"), top)
    return (f"{record['stream_s'][1]:8.2f} s  {answer:<24} {top['probability']:.2f}  "
            f"latency {record['latency_ms']:.0f} ms  dropped {record['dropped_windows']}")


def event_image(frames: np.ndarray, label: str, side: int = 384) -> np.ndarray:
    """The frames summed (what the network saw lately: ON red, OFF blue), enlarged, with the label on top."""
    import cv2

    image = contact_sheet(frames.sum(0, keepdims=True, dtype=np.int32), columns=1, min_side=side)
    band = np.full((28, image.shape[1], 3), 24, np.uint8)
    cv2.putText(band, label, (6, 20), cv2.FONT_HERSHEY_SIMPLEX, 0.6, (255, 255, 255), 1, cv2.LINE_AA)
    return np.concatenate([band, image])


class EventView:
    """--show: an OpenCV window with the newest stride of frames and the current label; q or Esc ends the run."""

    title = "masnn live"

    def __init__(self, stride_frames: int):
        if sys.platform.startswith("linux") and not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
            raise OSError("--show needs a display (neither DISPLAY nor WAYLAND_DISPLAY is set)")
        import cv2

        self.cv2, self.stride_frames = cv2, stride_frames
        try:
            cv2.namedWindow(self.title, cv2.WINDOW_AUTOSIZE)
        except cv2.error as error:
            raise OSError(f"--show: cannot open a window ({str(error).strip().splitlines()[-1]})") from None

    def show(self, record: dict, window: LiveWindow) -> bool:
        top = record["top_k"][0]
        label = answer_label(record.get("class"), top) if record.get("class") == "uncertain" else f"{top['class']}  {top['probability']:.2f}"
        self.cv2.imshow(self.title, event_image(window.frames[-self.stride_frames:], label))
        return self.poll()

    def poll(self) -> bool:
        """False once the user asked to quit."""
        return self.cv2.waitKey(1) & 0xFF not in (ord("q"), 27)

    def close(self) -> None:
        self.cv2.destroyWindow(self.title)
