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


LABEL_COLOUR = (220, 220, 220)  # BGR: light grey on the sheet's dark background
ON_COLOUR, OFF_COLOUR = (0, 0, 255), (255, 0, 0)  # BGR: ON red, OFF blue, as event_colours draws them


def _text(image: np.ndarray, text: str, x: int, y: int, scale: float = 0.4, colour=LABEL_COLOUR) -> None:
    import cv2

    cv2.putText(image, text, (x, y), cv2.FONT_HERSHEY_SIMPLEX, scale, colour, 1, cv2.LINE_AA)


def _text_width(text: str, scale: float) -> int:
    import cv2

    return cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, 1)[0][0]


def tile_time(k: int, dt_us: int) -> str:
    """Frame k's time range from the start: `90-135 ms`, or in seconds once past 10 s."""
    start, end = k * dt_us / 1000, (k + 1) * dt_us / 1000
    if end < 10_000:
        return f"{start:g}-{end:g} ms"
    return f"{start / 1000:.1f}-{end / 1000:.1f} s"


def labelled_sheet(frames: np.ndarray, dt_us: int | None = None, title: str | None = None, columns: int = 10,
                   min_side: int = 96) -> np.ndarray:
    """``contact_sheet`` with words: a title line, each tile's time range (ms from the first frame's start; the
    frame number without ``dt_us``) under it, and a legend line: ON events red, OFF blue, brightness by count."""
    n, _, height, width = frames.shape
    scale = max(1, -(-min_side // max(height, width)))
    tile_w, tile_h = width * scale + 2, height * scale + 2
    tiles = contact_sheet(frames, columns, min_side)
    rows = -(-n // columns) if n else 1
    label_h, bar_h = 16, 24
    peak = colour_peak(frames)
    legend = f"brightness: events per pixel, full at {peak}"
    sheet_w = max(tiles.shape[1], 380)
    sheet = np.full((bar_h + rows * (tile_h + label_h) + bar_h, sheet_w, 3), 40, np.uint8)
    if title:
        size = 0.45
        while size > 0.25 and _text_width(title, size) > sheet_w - 8:
            size -= 0.05
        _text(sheet, title, 4, 16, size)
    for r in range(rows):
        y = bar_h + r * (tile_h + label_h)
        sheet[y : y + tile_h, : tiles.shape[1]] = tiles[r * tile_h : (r + 1) * tile_h]
        for c in range(min(columns, n - r * columns)):
            k = r * columns + c
            label = tile_time(k, dt_us) if dt_us else f"frame {k}"
            size = 0.35
            while size > 0.2 and _text_width(label, size) > tile_w - 4:
                size -= 0.05
            _text(sheet, label, c * tile_w + 2, y + tile_h + 11, size)
    y = sheet.shape[0] - bar_h
    for x, colour, word in ((4, ON_COLOUR, "ON"), (58, OFF_COLOUR, "OFF")):
        sheet[y + 6 : y + 18, x : x + 12] = colour
        _text(sheet, word, x + 16, y + 17)
    _text(sheet, legend, 120, y + 17, 0.35 if _text_width(legend, 0.4) > sheet_w - 124 else 0.4)
    return sheet


def save_frames(path: str | Path, frames: np.ndarray, dt_us: int | None = None, title: str | None = None) -> None:
    """frames.npy (the counts [T, 2, H, W]) or a picture: the labelled contact sheet (``labelled_sheet``)."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix == ".npy":
        with atomic_path(path) as temporary:
            np.save(temporary, frames)
    elif suffix in (".png", ".jpg", ".jpeg"):
        import cv2

        ok, encoded = cv2.imencode(suffix, labelled_sheet(frames, dt_us, title))
        if not ok:
            raise EventFileError(path, "could not encode the image")
        with atomic_path(path) as temporary:
            temporary.write_bytes(encoded.tobytes())
    else:
        raise EventFileError(path, "output must end in .npy or .png")
