"""`masnn classify A B FOLDER/ ...`: many recordings, one summary row each (a rich table, CSV or JSON lines).

A folder contributes the recordings directly inside it, found by their content (``detect_format``), not their
names: other files (notes, labels CSVs) and subfolders are skipped, hidden files too; sorted by name. A file that
fails to classify gives a row with an ``error`` (its one-line message) and the others go on.
"""
from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Callable, Iterable, Iterator

from masnn.calibration import UNCERTAIN
from masnn.classify import IDLE
from masnn.datasets.events import EventFileError
from masnn.datasets.io.readers import detect_format

COLUMNS = ("file", "duration_s", "mode", "action", "confidence", "segments", "events_in_windows", "spikes", "energy_uj",
           "latency_ms_p50", "error")
FORMATS = ("table", "csv", "jsonl")


def is_recording(path: Path) -> bool:
    try:
        detect_format(path)
    except (EventFileError, OSError):
        return False
    return True


def find_recordings(paths: Iterable[str | Path]) -> list[Path]:
    """The given files in order (kept even if they are not recordings: their rows say why), each folder replaced
    by the recordings directly inside it, sorted."""
    found = []
    for path in map(Path, paths):
        if path.is_dir():
            found += [p for p in sorted(path.iterdir()) if not p.name.startswith(".") and p.is_file() and is_recording(p)]
        else:
            found.append(path)
    return found


def main_action(segments: list[dict]) -> tuple[str | None, float | None]:
    """The action a timeline spends most time on (idle and uncertain segments are none), and its time-weighted mean
    confidence (None, None: no action)."""
    time: dict[str, float] = {}
    weighted: dict[str, float] = {}
    for s in segments:
        if s["class"] in (IDLE, UNCERTAIN):
            continue
        length = max(s["end_s"] - s["start_s"], 1e-9)
        time[s["class"]] = time.get(s["class"], 0.0) + length
        weighted[s["class"]] = weighted.get(s["class"], 0.0) + length * s["confidence"]
    if not time:
        return None, None
    name = max(time, key=time.get)
    return name, weighted[name] / time[name]


def summary_row(report: dict) -> dict:
    """One recording's row (COLUMNS): the top class and its probability for a clip; for a timeline its segment
    count and main action (see ``main_action``). A variant's file is followed by its name, e.g. "a.aedat4 (mirrored)"."""
    totals = report["totals"]
    if report["mode"] == "clip":  # the report's answer (it may be idle or uncertain), else its top class
        prediction, top = report["prediction"], report["prediction"]["top_k"][0]
        action, confidence, count = prediction.get("class", top["class"]), prediction.get("confidence", top["probability"]), None
    else:
        (action, confidence), count = main_action(report["segments"]), len(report["segments"])
    file = report["file"] + (f" ({report['variant']})" if "variant" in report else "")
    return {"file": file, "duration_s": report["recording"]["duration_s"], "mode": report["mode"], "action": action,
            "confidence": confidence, "segments": count, "events_in_windows": totals["events_in_windows"], "spikes": totals["spikes"],
            "energy_uj": totals["energy_uj"], "latency_ms_p50": totals["latency_ms"]["p50"], "error": None}


def error_row(path: str | Path, message: str) -> dict:
    return {**dict.fromkeys(COLUMNS), "file": str(path), "error": message}


def classify_each(paths: list[Path], classify: Callable[[Path], object]) -> Iterator[tuple[Path, object, str | None]]:
    """(path, classify(path), None) or (path, None, one-line error) for each path, in order. ``classify(path)`` runs inside
    ``reading(path)``: its input errors name the file and end only that file; a bug of masnn is raised."""
    from masnn.cli.errors import INPUT_ERRORS, first_line, reading

    for path in paths:
        try:
            with reading(path):
                if not path.exists():
                    raise ValueError(f"{path}: no such file")
                report = classify(path)
        except INPUT_ERRORS as e:
            yield path, None, first_line(e)
        else:
            yield path, report, None


def csv_text(rows: list[dict]) -> str:
    out = io.StringIO()
    writer = csv.DictWriter(out, COLUMNS, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: "" if row.get(k) is None else row[k] for k in COLUMNS})
    return out.getvalue()


def jsonl_text(rows: list[dict]) -> str:
    return "".join(json.dumps({k: row.get(k) for k in COLUMNS}) + "\n" for row in rows)


def rows_text(rows: list[dict], fmt: str) -> str:
    if fmt == "csv":
        return csv_text(rows)
    if fmt == "jsonl":
        return jsonl_text(rows)
    raise ValueError(f"--format: must be one of {', '.join(FORMATS)} (got {fmt!r})")


def rows_table(rows: list[dict]):
    """The rows as a rich table (what `masnn classify` prints for several files)."""
    from rich.markup import escape
    from rich.table import Table

    table = Table(title=f"{len(rows)} recordings", caption="s: duration; %: confidence; events: in windows; µJ: energy; ms: latency p50")
    headers = ("file", "s", "mode", "action", "%", "segments", "events", "spikes", "µJ", "ms")
    for header in headers:
        table.add_column(header, justify="left" if header in ("file", "mode", "action") else "right", overflow="fold",
                         no_wrap=header != "file")
    for row in rows:
        cells = [escape(row["file"])]
        if row["error"]:  # the message itself follows the table, on one line
            cells += ["", "", "[red]error[/]"]
        else:
            cells += [_number(row["duration_s"], "{:.2f}"), row["mode"], row["action"] or IDLE, _number(row["confidence"], "{:.0%}"),
                      "" if row["segments"] is None else str(row["segments"]), f"{row['events_in_windows']:,}", f"{row['spikes']:,.0f}",
                      f"{row['energy_uj']:,.1f}", f"{row['latency_ms_p50']:.1f}"]
        table.add_row(*cells, *[""] * (len(headers) - len(cells)))
    return table


def _number(value, form: str) -> str:
    return "" if value is None else form.format(value)
