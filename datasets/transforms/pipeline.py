"""From a recording to model input: read -> (denoise) -> spatial map -> fixed-window frames.

``FramingConfig`` names every parameter that shapes the frames; checkpoints carry it so that a model
is always fed frames made the way it was trained on.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Iterator

import numpy as np
from masnn.datasets.io.readers import open_recording
from masnn.datasets.io.recording import Recording, first_event_time
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
