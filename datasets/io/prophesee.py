"""Prophesee EVT 2.0 / EVT 3.0 (.raw) and DAT (.dat) files, decoded by expelliarmus.

The '%' header names the encoding; the sensor size comes from a 'geometry' or 'format' line where there
is one, else from the camera generation in 'plugin_name', else from the events' extent.
"""
from __future__ import annotations

import re
from pathlib import Path

from masnn.datasets.events import EventFileError, RecordingInfo, as_events
from masnn.datasets.io.blocks import read_text_header
from masnn.datasets.io.recording import DEFAULT_CHUNK_EVENTS, Recording

PLUGIN_SENSORS = {"gen3": (640, 480), "gen31": (640, 480), "gen4": (1280, 720), "gen41": (1280, 720), "imx636": (1280, 720)}


def sniff_prophesee(head: bytes) -> bool:
    return head.startswith(b"% ") and _encoding(head.decode("latin-1").splitlines()) is not None


def _encoding(header_lines: list[str]) -> str | None:
    text = "\n".join(line for line in header_lines if line.startswith("%")).lower()
    if re.search(r"evt ?3|format evt3", text):
        return "evt3"
    if re.search(r"evt ?2|format evt2", text):
        return "evt2"
    if "event2d" in text or "data file containing" in text:
        return "dat"
    return None


def _sensor_size(header_lines: list[str]) -> tuple[int, int] | None:
    text = "\n".join(header_lines)
    if match := re.search(r"geometry (\d+)x(\d+)", text):
        return int(match[1]), int(match[2])
    if (width := re.search(r"width=(\d+)", text)) and (height := re.search(r"height=(\d+)", text)):
        return int(width[1]), int(height[1])
    if match := re.search(r"plugin_name \S*?(gen\d+|imx\d+)", text):
        return PLUGIN_SENSORS.get(match[1])
    return None


class PropheseeRecording(Recording):
    def __init__(self, path: Path, sensor_size: tuple[int, int] | None = None):
        lines, _ = read_text_header(str(path), prefix=b"%")
        self._encoding = _encoding(lines)
        if self._encoding is None:
            raise EventFileError(path, "Prophesee header names no known encoding (EVT2, EVT3, DAT)")
        size = sensor_size or _sensor_size(lines)
        if size is None:
            raise EventFileError(path, "Prophesee header gives no sensor size; pass it explicitly")
        camera = next((line.split(None, 2)[2] for line in lines if line.startswith("% plugin_name")), "Prophesee")
        self.info = RecordingInfo(str(path), f"Prophesee {self._encoding.upper()}", size[0], size[1], camera)

    def _chunks(self, start, end, chunk_events=DEFAULT_CHUNK_EVENTS):
        import expelliarmus

        wizard = expelliarmus.Wizard(encoding=self._encoding, fpath=self.info.path, chunk_size=chunk_events)
        try:
            for block in wizard.read_chunk():
                events = as_events(block)
                if end is not None and len(events) and events["t"][0] >= end:
                    return
                yield events
        except (RuntimeError, ValueError, OSError) as e:
            raise EventFileError(self.info.path, f"cannot be decoded as Prophesee {self._encoding.upper()} ({e})") from None
