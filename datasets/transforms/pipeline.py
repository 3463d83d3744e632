"""From a recording to model input: read -> (denoise) -> spatial map -> fixed-window frames.

``FramingConfig`` names every parameter that shapes the frames; checkpoints carry it so that a model
is always fed frames made the way it was trained on.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Iterator

import numpy as np
from masnn.datasets.events import EventFileError
from masnn.datasets.io.readers import open_recording
from masnn.datasets.io.recording import Recording
from masnn.datasets.io.writers import atomic_path
from masnn.datasets.transforms.denoise import (
    filter_background_activity,
    new_filter_state,
)
from masnn.datasets.transforms.framing import iter_time_frames
from masnn.datasets.transforms.spatial import SpatialMap


@dataclass(frozen=True)
class FramingConfig:
    """The MA-SNN protocol by default: 15 ms x 60 frames, 32x32 (DVS128 pixels // 4)."""

    dt_us: int = 15_000
    n_frames: int | None = 60
    size: int | None = 32  # output side; None keeps the sensor's resolution
    mode: str = "crop"
    denoise_us: int | None = None  # background-activity filter time; None is off

    def to_dict(self) -> dict:
        return asdict(self)

    def spatial_map(self, sensor_size: tuple[int, int]) -> SpatialMap | None:
        return None if self.size is None else SpatialMap(sensor_size, (self.size, self.size), self.mode)

    def output_size(self, sensor_size: tuple[int, int]) -> tuple[int, int]:
        return sensor_size if self.size is None else (self.size, self.size)


def first_event_time(recording: Recording) -> int:
    if recording.info.time_range is not None:
        return recording.info.time_range[0]
    return int(next(recording.chunks())["t"][0])


def denoised_chunks(recording: Recording, config: FramingConfig, start: int | None = None, end: int | None = None) -> Iterator[np.ndarray]:
    """The recording's events between start and end, through the background-activity filter if asked."""
    state = new_filter_state(recording.info.sensor_size) if config.denoise_us else None
    for chunk in recording.chunks(start, end):
        yield chunk if state is None else filter_background_activity(chunk, state, config.denoise_us)


def iter_recording_frames(recording: Recording, config: FramingConfig, start: int | None = None, end: int | None = None) -> Iterator[np.ndarray]:
    """Blocks of model-input frames; the spatial mapping runs inside the framing pass.

    With denoising, reading starts one filter time before ``start`` so that the first events of the
    window can be supported by the ones just before it, as they would be inside a longer window.
    """
    warm_up_start = start - config.denoise_us if config.denoise_us and start is not None else start
    chunks = denoised_chunks(recording, config, warm_up_start, end)
    spatial = config.spatial_map(recording.info.sensor_size)
    return iter_time_frames(chunks, recording.info.sensor_size, config.dt_us, start, end, spatial=spatial)


def frame_recording(path: str | Path, config: FramingConfig = FramingConfig(), start_us: int | None = None) -> np.ndarray:
    """Frames [T, 2, H, W] (int16 counts) from ``start_us`` after the first event (default 0)."""
    with open_recording(path) as recording:
        start = first_event_time(recording) + (start_us or 0)
        end = None if config.n_frames is None else start + config.n_frames * config.dt_us
        return np.concatenate(list(iter_recording_frames(recording, config, start, end)))


def summarize(path: str | Path, start_us: int | None = None, end_us: int | None = None) -> dict:
    """Counts and extents of a recording, streamed in bounded memory."""
    with open_recording(path) as recording:
        info = recording.info
        origin = first_event_time(recording)
        start = None if start_us is None else origin + start_us
        end = None if end_us is None else origin + end_us
        n = on = 0
        first = last = None
        pixels = np.zeros(info.width * info.height, dtype=bool)
        for chunk in recording.chunks(start, end):
            n += len(chunk)
            on += int(np.count_nonzero(chunk["p"]))
            first = int(chunk["t"][0]) if first is None else first
            last = int(chunk["t"][-1])
            pixels[chunk["y"].astype(np.int64) * info.width + chunk["x"]] = True
    duration = (last - first) / 1e6
    return {
        "file": str(path),
        "format": info.format,
        "camera": info.camera or "unknown",
        "sensor": f"{info.width}x{info.height}",
        "events": n,
        "first_t_us": first,
        "last_t_us": last,
        "duration_s": duration,
        "event_rate_per_s": n / duration if duration > 0 else float(n),
        "on_fraction": on / n,
        "active_pixels": int(pixels.sum()),
    }


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
