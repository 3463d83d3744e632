"""`masnn classify REC --labels REC_labels.csv`: a timeline scored against the true, labelled segments.

The labels file is DVS128 Gesture's (``class,startTime_usec,endTime_usec``, class 1..11, times in the recording's
timebase; see ``masnn.datasets.loaders.gesture.read_labels``). Its times are moved to seconds after the recording's
first event, the timebase of the report. For each labelled segment the predicted class is the timeline class that
covers most of the segment's time (idle included: a model that sees nothing there is wrong); where no timeline
segment overlaps it, the majority of the windows whose centre lies inside it (ties: the earlier class); where
there is none either, no prediction (wrong).
"""
from __future__ import annotations

from pathlib import Path

from masnn.classify import IDLE
from masnn.datasets.io.readers import open_recording
from masnn.datasets.io.recording import first_event_time
from masnn.datasets.loaders.gesture import read_labels


def recording_span(path: str | Path) -> tuple[int, int]:
    """First and last event times of a recording (from its header where the format has them)."""
    with open_recording(path) as recording:
        if recording.info.time_range is not None:
            return tuple(recording.info.time_range)
        first = first_event_time(recording)
        last = first
        for chunk in recording.chunks():
            last = int(chunk["t"][-1])
    return first, last


def labelled_segments(labels_path: str | Path, first_us: int, last_us: int, class_names: list[str]) -> list[dict]:
    """The labels file's rows as {class, index, start_s, end_s} in seconds after ``first_us``; ValueError naming
    the labels file when a row lies outside the recording [first_us, last_us] or names a class the model lacks."""
    rows = read_labels(labels_path)
    if not rows:
        raise ValueError(f"{labels_path}: no labelled segments")
    out = []
    for line, (index, start, end) in enumerate(rows, start=2):
        if end <= first_us or start > last_us:
            raise ValueError(f"{labels_path}: line {line}: segment {start}-{end} us lies outside the recording "
                             f"({first_us}-{last_us} us): labels of another recording?")
        if index >= len(class_names):
            raise ValueError(f"{labels_path}: line {line}: class {index + 1}, but the model has {len(class_names)} classes")
        out.append({"class": class_names[index], "index": index, "start_s": (start - first_us) / 1e6, "end_s": (end - first_us) / 1e6})
    return out


def _overlap(a0: float, a1: float, b0: float, b1: float) -> float:
    return max(0.0, min(a1, b1) - max(a0, b0))


def predicted_class(segment: dict, timeline: list[dict], windows: list[dict] = ()) -> str | None:
    """The class covering most of ``segment``'s time among the ``timeline``'s segments; else the majority class of
    the ``windows`` (report windows: top_k, idle) centred inside it; else None. Ties go to the earlier class."""
    cover: dict[str, float] = {}
    for entry in timeline:
        time = _overlap(segment["start_s"], segment["end_s"], entry["start_s"], entry["end_s"])
        if time > 0:
            cover[entry["class"]] = cover.get(entry["class"], 0.0) + time
    if not cover:
        for w in windows:
            if segment["start_s"] <= (w["start_s"] + w["end_s"]) / 2 < segment["end_s"]:
                name = IDLE if w["idle"] else w.get("class", w["top_k"][0]["class"])  # the window's answer where it has one
                cover[name] = cover.get(name, 0.0) + 1
    if not cover:
        return None
    best = max(cover.values())
    return next(name for name, value in cover.items() if value == best)


def score(truth: list[dict], timeline: list[dict], windows: list[dict] = (), class_names: list[str] | None = None) -> dict:
    """The ``labels`` block of the report: each true segment with its prediction, per-class and overall accuracy.
    ``per_class`` follows ``class_names`` (default: the order classes first appear in ``truth``), labelled classes only."""
    scored = []
    for segment in truth:
        predicted = predicted_class(segment, timeline, windows)
        scored.append({**segment, "predicted": predicted, "correct": predicted == segment["class"]})
    order = [n for n in (class_names or dict.fromkeys(s["class"] for s in truth)) if any(s["class"] == n for s in truth)]
    per_class = []
    for name in order:
        mine = [s for s in scored if s["class"] == name]
        right = sum(s["correct"] for s in mine)
        per_class.append({"class": name, "segments": len(mine), "correct": right, "accuracy": right / len(mine)})
    correct = sum(s["correct"] for s in scored)
    return {"segments": scored, "per_class": per_class, "correct": correct, "total": len(scored), "accuracy": correct / len(scored)}


def score_report(report: dict, labels_path: str | Path, first_us: int, last_us: int) -> dict:
    """The labels block for a timeline ``report`` of a recording whose events run from ``first_us`` to ``last_us``."""
    names = report["model"]["classes"]
    truth = labelled_segments(labels_path, first_us, last_us, names)
    return {"file": str(labels_path), **score(truth, report["segments"], report["windows"], names)}


def labels_tables(block: dict) -> list:
    """What `masnn classify --labels` prints after the timeline: true segments against predictions, per class."""
    from rich.markup import escape
    from rich.table import Table
    from rich.text import Text

    table = Table(title=f"labelled segments ({escape(block['file'])})")
    for column in ("#", "true action", "start s", "end s", "predicted", ""):
        table.add_column(column, justify="right" if column in ("#", "start s", "end s") else "left")
    for k, s in enumerate(block["segments"], 1):
        table.add_row(str(k), s["class"], f"{s['start_s']:.2f}", f"{s['end_s']:.2f}", s["predicted"] or "-",
                      "[green]✓[/]" if s["correct"] else "[red]✗[/]")
    per_class = Table(title="per-gesture accuracy")
    for column in ("action", "segments", "correct", "accuracy"):
        per_class.add_column(column, justify="left" if column == "action" else "right")
    for c in block["per_class"]:
        per_class.add_row(c["class"], str(c["segments"]), str(c["correct"]), f"{100 * c['accuracy']:.0f} %")
    overall = Text(f"accuracy: {block['correct']}/{block['total']} labelled segments = {100 * block['accuracy']:.1f} %")
    return [table, per_class, overall]
