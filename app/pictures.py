"""Event frames as pictures: ON red, OFF blue, brightness by count; contact sheets and the frame files of
`masnn frames`. Used by the CLI, the live view and the rendered videos."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from masnn.datasets.events import EventFileError
from masnn.datasets.io.writers import atomic_path


def colour_peak(frames: np.ndarray) -> int:
    """The count that saturates the colour of a block of frames: its 99th percentile, so one hot pixel does not
    darken the rest."""
    return max(1, int(np.percentile(frames[frames > 0], 99)) if (frames > 0).any() else 1)


def event_colours(frame: np.ndarray, peak: int, floor: int = 0) -> np.ndarray:
    """A BGR image [H, W, 3] of one frame [2, H, W]: ON events red, OFF blue, brightness by count up to ``peak``.
    ``floor``: the brightness of one event, so that single events stay visible over a background."""
    counts = frame.astype(np.int32)  # int16 counts above 128 would overflow when multiplied
    scaled = np.where(counts > 0, floor + counts * (255 - floor) // peak, 0)
    image = np.zeros((*frame.shape[1:], 3), np.uint8)
    image[..., 2] = np.clip(scaled[1], 0, 255)  # ON -> red
    image[..., 0] = np.clip(scaled[0], 0, 255)  # OFF -> blue
    return image


def contact_sheet(frames: np.ndarray, columns: int = 10, min_side: int = 96) -> np.ndarray:
    """A BGR image of the frames in a grid: ON events red, OFF blue, brightness by count."""
    n, _, height, width = frames.shape
    scale = max(1, -(-min_side // max(height, width)))
    rows = -(-n // columns) if n else 1
    sheet = np.full((rows * (height * scale + 2), min(n, columns) * (width * scale + 2) or width * scale, 3), 40, np.uint8)
    peak = colour_peak(frames)
    for k in range(n):
        image = event_colours(frames[k], peak).repeat(scale, 0).repeat(scale, 1)
        r, c = divmod(k, columns)
        y0, x0 = r * (height * scale + 2), c * (width * scale + 2)
        sheet[y0 : y0 + height * scale, x0 : x0 + width * scale] = image
    return sheet


def save_frames(path: str | Path, frames: np.ndarray) -> None:
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix == ".npy":
        with atomic_path(path) as temporary:
            np.save(temporary, frames)
    elif suffix in (".png", ".jpg", ".jpeg"):
        import cv2

        ok, encoded = cv2.imencode(suffix, contact_sheet(frames))
        if not ok:
            raise EventFileError(path, "could not encode the image")
        with atomic_path(path) as temporary:
            temporary.write_bytes(encoded.tobytes())
    else:
        raise EventFileError(path, "output must end in .npy or .png")
