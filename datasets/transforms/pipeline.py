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
from masnn.datasets.transforms.spatial import SpatialMap
from masnn.datasets.transforms.stream import StreamFramer


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

    @property
    def window_us(self) -> int | None:
        """The span of one model input, n_frames x dt_us (None when n_frames is)."""
        return None if self.n_frames is None else self.n_frames * self.dt_us

    def spatial_map(self, sensor_size: tuple[int, int]) -> SpatialMap | None:
        return None if self.size is None else SpatialMap(sensor_size, (self.size, self.size), self.mode)

    def output_size(self, sensor_size: tuple[int, int]) -> tuple[int, int]:
        return sensor_size if self.size is None else (self.size, self.size)


def iter_recording_frames(recording: Recording, config: FramingConfig, start: int | None = None, end: int | None = None) -> Iterator[np.ndarray]:
    """Blocks of model-input frames from ``start`` (default: the first event kept) to ``end`` (default: the
    last); ``config.n_frames`` does not bound them. See ``StreamFramer``.

    With denoising, reading starts one filter time before ``start`` so that the first events of the
    window can be supported by the ones just before it, as they would be inside a longer window.
    """
    framer = StreamFramer.from_config(config, recording.info.sensor_size, start, end)
    warm_up_start = start - config.denoise_us if config.denoise_us and start is not None else start
    return framer.iter_blocks(recording.chunks(warm_up_start, end))


def frame_recording(path: str | Path, config: FramingConfig = FramingConfig(), start_us: int | None = None) -> np.ndarray:
    """Frames [T, 2, H, W] (int16 counts) from ``start_us`` after the first event (default 0)."""
    with open_recording(path) as recording:
        start = first_event_time(recording) + (start_us or 0)
        end = None if config.n_frames is None else start + config.n_frames * config.dt_us
        return np.concatenate(list(iter_recording_frames(recording, config, start, end)))


def fill_frames(blocks, frames: np.ndarray) -> np.ndarray:
    """``frames`` (zeros) filled from the start with the frames of ``blocks``, as far as they reach."""
    k = 0
    for block in blocks:
        take = min(len(block), len(frames) - k)
        frames[k : k + take] = block[:take]
        k += take
    return frames


def frame_events(events: np.ndarray, sensor_size: tuple[int, int], config: FramingConfig, start_us: int,
                 n_frames: int) -> np.ndarray:
    """int16 frames [n_frames, 2, H, W] of time-sorted events: frame k counts [start + k dt, start + (k + 1) dt),
    through ``config``'s denoising (fed the events before ``start`` too) and spatial map."""
    width, height = config.output_size(sensor_size)
    frames = np.zeros((n_frames, 2, height, width), dtype=np.int16)
    framer = StreamFramer.from_config(config, sensor_size, start_us, start_us + n_frames * config.dt_us)
    return fill_frames(framer.iter_blocks([events]), frames)
