"""One streaming interface over every event-file format.

``open_recording(path)`` picks the reader by the file's content (magic bytes or header), never by its
extension alone (except slayer's .bs2, which has neither: a .bs2 name whose content is no other format's), and
returns a ``Recording`` (see ``recording``): metadata plus ``chunks()``, which yields
canonical, checked event arrays of bounded size.
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np

from masnn.datasets.events import EventFileError, RecordingInfo
from masnn.datasets.io.recording import Recording

Sniffer = Callable[[bytes], bool]
Opener = Callable[..., Recording]


def _formats() -> list[tuple[str, Sniffer, Opener]]:
    # Imported here so that opening an AEDAT 3.1 file never loads dv-processing, and the reverse.
    from masnn.datasets.io import aedat2, aedat4, aedat31, plain, prophesee

    return [
        ("AEDAT 4.0", aedat4.sniff_aedat4, aedat4.Aedat4Recording),
        ("AEDAT 3.1", aedat31.sniff_aedat31, aedat31.Aedat31Recording),
        ("AEDAT 2.0", aedat2.sniff_aedat2, aedat2.Aedat2Recording),
        ("numpy .npy", plain.sniff_npy, plain.NpyRecording),
        ("numpy .npz", plain.sniff_npz, plain.NpzRecording),
        ("Prophesee", prophesee.sniff_prophesee, prophesee.PropheseeRecording),
        ("text t x y p", plain.sniff_text, plain.TextRecording),
    ]


def detect_format(path: str | Path) -> str:
    return _opener(Path(path))[0]


def _opener(path: Path) -> tuple[str, Opener]:
    if not path.exists():
        raise EventFileError(path, "no such file")
    if path.is_dir():
        raise EventFileError(path, "is a folder, not a recording")
    try:
        with open(path, "rb") as f:
            head = f.read(4096)
    except OSError as e:
        raise EventFileError(path, f"cannot be read ({e.strerror})") from None
    if not head:
        raise EventFileError(path, "is empty (0 bytes)")
    for name, sniff, opener in _formats():
        if sniff(head):
            return name, opener
    from masnn.datasets.io import bs2

    if bs2.named_bs2(path):  # no magic bytes to tell it by: named by its extension
        return "slayer .bs2", bs2.Bs2Recording
    raise EventFileError(path, f"unknown or unsupported event format (file starts with {head[:16]!r})")


def open_recording(path: str | Path, sensor_size: tuple[int, int] | None = None) -> Recording:
    """Opens any supported recording. ``sensor_size`` (width, height) overrides what the file says."""
    path = Path(path)
    _, opener = _opener(path)
    return opener(path, sensor_size=sensor_size)


def read_events(
    path: str | Path, start: int | None = None, end: int | None = None, sensor_size: tuple[int, int] | None = None
) -> tuple[np.ndarray, RecordingInfo]:
    with open_recording(path, sensor_size) as recording:
        return recording.read(start, end), recording.info


__all__ = ["Recording", "open_recording", "read_events", "detect_format"]
