"""AEDAT 4.0 files that only dv-processing can decode (Zstandard, or LZ4 where no liblz4 is found), decoded
in a child process with a time limit.

Why: on damaged input dv-processing can crash the process (a segmentation fault), spin without end (deaf to
Ctrl-C) or throw C++ exceptions. In a child, a crash or a spin ends as one line naming the file
(``EventFileError``) and the caller lives on. The child writes the events as raw EVENT_DTYPE records to a
file that the parent maps into memory, so a recording of any size passes without being held twice, and an
outcome (what dv-processing says about the file, how many events, the fault that stopped it) as JSON.

The parent runs ``python -m masnn.datasets.io.aedat4_dv MODE FILE FOLDER [START END]``; MODE is "info" (open
only) or "events" (decode, the whole file or start <= t < end).
"""
from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from masnn.datasets.events import EVENT_DTYPE, EventFileError, as_events

BASE_SECONDS, SECONDS_PER_BYTE = 10.0, 1 / 10e6  # generous: dv-processing decodes far faster than 10 MB/s
SELECTION_STEP_US = 50_000  # first window of a time selection; later windows adapt to the event rate
OUTCOME, EVENTS, CHILD_LOG = "outcome.json", "events.bin", "stderr.txt"


@dataclass
class DvOutcome:
    info: dict  # width, height, camera, time_range as dv-processing gives them
    events: np.ndarray  # EVENT_DTYPE, memory-mapped (read-only)
    fault: str | None  # why dv-processing stopped before the end, None when it did not


def time_limit(file_size: int) -> float:
    return BASE_SECONDS + SECONDS_PER_BYTE * file_size


def run_dv_processing(path: Path, mode: str, start: int | None = None, end: int | None = None) -> DvOutcome:
    """Runs dv-processing on ``path`` in a child process. Raises EventFileError where it crashes, spins past
    the time limit, cannot open the file, or stops with an error before the first event."""
    limit = time_limit(path.stat().st_size)
    with tempfile.TemporaryDirectory(prefix="masnn-dv-", ignore_cleanup_errors=True) as folder:
        command = _child_command(mode, path.resolve(), Path(folder), start, end)
        with open(Path(folder) / CHILD_LOG, "wb") as log:
            try:
                done = subprocess.run(command, stdin=subprocess.DEVNULL, stdout=log, stderr=log, timeout=limit)
            except subprocess.TimeoutExpired:  # run() has killed the child
                raise EventFileError(path, f"dv-processing did not finish within {limit:.0f} s") from None
        if done.returncode < 0:
            raise EventFileError(path, f"dv-processing crashed on this file (signal {-done.returncode})")
        outcome = _read_outcome(path, Path(folder), done.returncode)
        # mapped before the folder goes: the mapping keeps the data after the file's name is removed
        events = _mapped_events(Path(folder) / EVENTS, outcome["events"])
    if outcome["info"] is None:
        raise EventFileError(path, f"dv-processing cannot open this file ({outcome['fault']})")
    if outcome["fault"] is not None and len(events) == 0:
        raise EventFileError(path, f"dv-processing stops before the first event ({outcome['fault']})")
    return DvOutcome(outcome["info"], events, outcome["fault"])


def _child_command(mode: str, path: Path, folder: Path, start: int | None, end: int | None) -> list[str]:
    bounds = ["-" if bound is None else str(int(bound)) for bound in (start, end)]
    return [sys.executable, "-m", __name__, mode, str(path), str(folder), *bounds]


def _read_outcome(path: Path, folder: Path, returncode: int) -> dict:
    try:
        return json.loads((folder / OUTCOME).read_text())
    except (OSError, ValueError):
        lines = (folder / CHILD_LOG).read_text(errors="replace").strip().splitlines()
        said = lines[-1] if lines else f"exit status {returncode}"
        raise EventFileError(path, f"dv-processing failed on this file ({said})") from None


def _mapped_events(file: Path, count: int) -> np.ndarray:
    if count == 0:
        return np.zeros(0, EVENT_DTYPE)
    events = np.memmap(file, EVENT_DTYPE, mode="r", shape=(count,))
    return events.view(np.ndarray)


# ------------------------------------------------------------------------------------------- the child

def _child(mode: str, path: str, folder: str, start: str, end: str) -> None:
    info, count, fault = None, 0, None
    try:
        import dv_processing as dv

        reader = dv.io.MonoCameraRecording(_readable_name(Path(path), Path(folder)))
        if not reader.isEventStreamAvailable():
            raise ValueError("no event stream")
        width, height = (int(v) for v in reader.getEventResolution())
        first, last = (int(v) for v in reader.getTimeRange())
        info = {"width": width, "height": height, "camera": reader.getCameraName(), "time_range": [first, last]}
        if mode == "events":
            selecting = start != "-" or end != "-"
            if selecting:
                batches = _selection(reader, (first, last), _bound(start), _bound(end))
            else:
                batches = _sequential(reader)
            with open(Path(folder) / EVENTS, "wb") as out:
                for batch in batches:
                    out.write(as_events(batch).tobytes())
                    count += len(batch)
    except Exception as e:  # RuntimeError, MemoryError, std::bad_alloc, ...: said, not raised
        fault = _first_line(e)
    (Path(folder) / OUTCOME).write_text(json.dumps({"info": info, "events": count, "fault": fault}))


def _bound(text: str) -> int | None:
    return None if text == "-" else int(text)


def _readable_name(path: Path, folder: Path) -> str:
    """dv-processing opens only names ending in .aedat4; the format was chosen by content, so a file named
    otherwise is opened through a symbolic link that has that ending."""
    if path.suffix.lower() == ".aedat4":
        return str(path)
    alias = folder / "recording.aedat4"
    alias.symlink_to(path)
    return str(alias)


def _sequential(reader):
    while True:
        batch = reader.getNextEventBatch()
        if batch is None:
            if not reader.isRunning():
                return
            continue
        if batch.size():
            yield batch.numpy()


def _selection(reader, time_range, start, end, chunk_events=1 << 18):
    """start <= t < end through the file's packet index, in windows aimed at about chunk_events events."""
    first, last = time_range
    cursor = first if start is None else max(start, first)
    stop = last + 1 if end is None else min(end, last + 1)
    step = SELECTION_STEP_US
    while cursor < stop:
        window_end = min(cursor + step, stop)
        store = reader.getEventsTimeRange(int(cursor), int(window_end))
        if store is not None and store.size():
            events = store.numpy()
            yield events
            step = int(np.clip(step * chunk_events / len(events), 1_000, 60_000_000))
        else:
            step = min(step * 4, 60_000_000)
        cursor = window_end


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


if __name__ == "__main__":
    _child(*sys.argv[1:6])
