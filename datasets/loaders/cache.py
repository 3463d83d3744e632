"""Samples -> training items: the sample index, window framing, an on-disk frame cache, and FrameDataset.

A ``Sample`` names a time window [start_us, end_us) of one recording (microseconds, the recording's own
timebase), its 0-based label and its subject. ``FrameDataset`` turns samples into frames following the
MA-SNN protocol (ma-snn.md section 4): a random T * dt crop per access for training, ``n_crops`` crops
spread evenly over the sample for the test vote, or the whole sample.

Crop starts are always whole multiples of dt after the sample's start (``start + k * dt``):

- "random-crop": k is drawn uniformly from 0 .. K with K = floor((duration - T * dt) / dt), the last k
  whose window still ends inside the sample; K = 0 when the sample is shorter than the window (the crop
  starts at ``start`` and the frames past the sample's end are empty). The draw uses
  ``numpy.random.default_rng([seed, epoch, index])``, so it is fixed by (seed, epoch, index) whatever the
  worker or the order of access; ``set_epoch`` moves to the next epoch's crops.
- "crops": crop i of n (i = 0 .. n - 1) starts at k_i = floor(i * K / (n - 1)) (k_0 = 0 for n = 1):
  the first crop starts at the sample's start, the last one at the latest dt-aligned start whose window
  ends inside the sample, the others evenly between them, each rounded down to a multiple of dt (so
  consecutive starts differ by floor or ceil of K / (n - 1) frames). Every window lies inside the sample
  when the sample is at least T * dt long; otherwise all crops are the one crop at ``start``.
- "whole": the sample from its start, ceil(duration / dt) frames (the last one partial); T is ignored.

Frames never hold events outside the sample: a window is read over [window start, min(window end,
sample end)) and the frames after the sample's end stay zero.

``FrameCache`` stores the frames of a WHOLE sample (frames k = 0 .. ceil(duration / dt) - 1 from the
sample's start) once per (sample, framing) in ``<root>/<key>.npy``; every dt-aligned crop above is a slice
of it, so random crops of every epoch hit the same entry, and a crop read from the cache equals the crop
framed directly (frame counts are per window; the background-activity filter, when on, only looks
``denoise_us`` back, and both paths start reading that long before their first frame). The key hashes
``FramingConfig.to_dict()`` (dt, T, size, mode, denoise), the recording's resolved path, size and mtime
(ns), and the sample's start and end, so changing any of them misses rather than serving stale frames
(stale entries are left on disk; delete the folder to reclaim them). An entry is written to a unique temp
file in the same folder and renamed into place with ``os.replace``: processes (DataLoader workers, two
runs) filling the cache at once may both compute an entry, but nobody ever reads a half-written file.
Size: 4 KB a frame at 32x32 (int16), about 1.6 MB for a 6 s gesture at dt = 15 ms; 64 KB a frame at
128x128. Entries are memory-mapped on read, so a crop reads only its own T frames.
"""
from __future__ import annotations

import hashlib
import json
import math
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from masnn.datasets.events import EventFileError, concatenate
from masnn.datasets.io.readers import open_recording
from masnn.datasets.io.writers import atomic_path, remove_stale_temporaries
from masnn.datasets.transforms.pipeline import FramingConfig, fill_frames, iter_recording_frames

CROP_MODES = ("random-crop", "crops", "whole")
CACHE_VERSION = 1  # bump when the framing code changes what it produces


@dataclass(frozen=True)
class Sample:
    """One labelled window of a recording: events with start_us <= t < end_us."""

    path: str
    label: int  # 0-based
    start_us: int
    end_us: int
    subject: str

    @property
    def duration_us(self) -> int:
        return self.end_us - self.start_us


class _EmptyWindowsAllowed:
    """A recording whose ``chunks`` yield nothing for a window without events (instead of raising)."""

    def __init__(self, recording):
        self._recording = recording
        self.info = recording.info

    def chunks(self, start=None, end=None):
        try:
            yield from self._recording.chunks(start, end)
        except EventFileError as e:
            if not e.problem.startswith("no events"):
                raise


def frame_window(path: str | Path, config: FramingConfig, start_us: int, end_us: int, n_frames: int) -> np.ndarray:
    """int16 frames [n_frames, 2, H, W]; frame k counts events in [start + k dt, start + (k + 1) dt),
    only those with t < end_us; frames past ``end_us`` (and a window without events) are zeros."""
    with open_recording(path) as recording:
        width, height = config.output_size(recording.info.sensor_size)
        frames = np.zeros((n_frames, 2, height, width), dtype=np.int16)
        end_us = min(end_us, start_us + n_frames * config.dt_us)
        if end_us <= start_us:
            return frames
        return fill_frames(iter_recording_frames(_EmptyWindowsAllowed(recording), config, start_us, end_us), frames)


def read_window(path: str | Path, start_us: int, end_us: int) -> tuple[np.ndarray, tuple[int, int]]:
    """(the events with start_us <= t < end_us, possibly none; the recording's sensor size)."""
    with open_recording(path) as recording:
        chunks = list(_EmptyWindowsAllowed(recording).chunks(start_us, end_us)) if end_us > start_us else []
        return concatenate(chunks), recording.info.sensor_size


def whole_frame_count(sample: Sample, config: FramingConfig) -> int:
    return max(1, math.ceil(sample.duration_us / config.dt_us))


def max_crop_offset(sample: Sample, config: FramingConfig) -> int:
    """K: the last dt-aligned crop start (in frames after the sample's start) whose window fits inside."""
    span = sample.duration_us - _window_frames(config) * config.dt_us
    return max(0, span // config.dt_us)


def crop_offsets(sample: Sample, config: FramingConfig, n_crops: int) -> list[int]:
    """Crop starts of the "crops" mode, in frames (multiples of dt) after the sample's start."""
    if n_crops < 1:
        raise ValueError(f"n_crops must be at least 1, not {n_crops}")
    k_max = max_crop_offset(sample, config)
    if n_crops == 1:
        return [0]
    return [i * k_max // (n_crops - 1) for i in range(n_crops)]


def _window_frames(config: FramingConfig) -> int:
    if config.n_frames is None:
        raise ValueError("crops need FramingConfig.n_frames (T); use mode='whole' for the whole sample")
    return config.n_frames


def sample_key(sample: Sample, **entry) -> str:
    """The cache key of ``sample``'s entry described by ``entry`` (what is stored and how it was made), the
    recording's resolved path, size and mtime (ns), and the sample's start and end."""
    stat = os.stat(sample.path)
    payload = {
        **entry,
        "path": str(Path(sample.path).resolve()),
        "file_size": stat.st_size,
        "mtime_ns": stat.st_mtime_ns,
        "start_us": int(sample.start_us),
        "end_us": int(sample.end_us),
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:40]


def load_or_make(path: Path, make) -> tuple[np.ndarray, bool]:
    """(the array stored at ``path``, memory-mapped, True), or (``make()``, False) after writing it there
    atomically (a unique temp file renamed into place: concurrent fillers never read a half-written file)."""
    try:
        return np.load(path, mmap_mode="r", allow_pickle=False), True
    except FileNotFoundError:
        pass
    array = make()
    with atomic_path(path) as temporary, open(temporary, "wb") as f:
        np.save(f, array)
    return array, False


class NpyCache:
    """A folder of .npy entries, each made once (``load_or_make``), with hit and miss counts per process (each
    DataLoader worker counts its own)."""

    def __init__(self, root: str | Path):
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        remove_stale_temporaries(self.root)  # entries a killed run was writing (a live run's are kept)
        self.hits = 0
        self.misses = 0

    def path_of(self, key: str) -> Path:
        return self.root / f"{key}.npy"

    def cached(self, key: str, make) -> np.ndarray:
        array, hit = load_or_make(self.path_of(key), make)
        self.hits += hit
        self.misses += not hit
        return array


class FrameCache(NpyCache):
    """Whole-sample frames on disk, one .npy per (sample, framing); see the module docstring."""

    def key(self, sample: Sample, config: FramingConfig) -> str:
        return sample_key(sample, version=CACHE_VERSION, framing=config.to_dict())

    def entry_path(self, sample: Sample, config: FramingConfig) -> Path:
        return self.path_of(self.key(sample, config))

    def sample_frames(self, sample: Sample, config: FramingConfig) -> np.ndarray:
        """int16 frames [ceil(duration / dt), 2, H, W] of the whole sample (memory-mapped on a hit)."""
        return self.cached(self.key(sample, config), lambda: frame_window(
            sample.path, config, sample.start_us, sample.end_us, whole_frame_count(sample, config)))


class FrameDataset(torch.utils.data.Dataset):
    """Items (frames float32 [T, 2, H, W], label); "crops" gives [n_crops, T, 2, H, W], "whole"
    [ceil(duration / dt), 2, H, W]. Crop placement: see the module docstring."""

    def __init__(
        self,
        samples: list[Sample],
        config: FramingConfig = FramingConfig(),
        mode: str = "random-crop",
        n_crops: int = 10,
        seed: int = 0,
        cache: FrameCache | None = None,
    ):
        if mode not in CROP_MODES:
            raise ValueError(f"mode must be one of {CROP_MODES}, not {mode!r}")
        if mode != "whole":
            _window_frames(config)
        self.samples = list(samples)
        self.config = config
        self.mode = mode
        self.n_crops = n_crops
        self.seed = seed
        self.cache = cache
        self.epoch = 0
        if n_crops < 1:
            raise ValueError(f"n_crops must be at least 1, not {n_crops}")

    def set_epoch(self, epoch: int) -> None:
        """Selects the random crops of ``epoch`` (call before iterating a DataLoader over this epoch;
        DataLoader workers copy the dataset when an epoch starts, unless persistent_workers=True)."""
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(self.samples)

    def crop_offset(self, index: int) -> int:
        """The "random-crop" start of sample ``index`` in this epoch, in frames after its start."""
        k_max = max_crop_offset(self.samples[index], self.config)
        rng = np.random.default_rng([self.seed, self.epoch, index])
        return int(rng.integers(0, k_max + 1))

    def window_starts(self, index: int) -> list[int]:
        """Absolute start times (us) of the windows the current mode returns for sample ``index``."""
        sample, dt = self.samples[index], self.config.dt_us
        if self.mode == "random-crop":
            offsets = [self.crop_offset(index)]
        elif self.mode == "crops":
            offsets = crop_offsets(sample, self.config, self.n_crops)
        else:
            offsets = [0]
        return [sample.start_us + k * dt for k in offsets]

    def _frames(self, sample: Sample, offsets: list[int], n_frames: int) -> np.ndarray:
        """int16 [len(offsets), n_frames, 2, H, W]: the windows starting ``offsets`` frames after the start."""
        if self.cache is None:
            dt = self.config.dt_us
            return np.stack([frame_window(sample.path, self.config, sample.start_us + k * dt, sample.end_us, n_frames) for k in offsets])
        whole = self.cache.sample_frames(sample, self.config)  # one look-up per item, whatever the crops
        out = np.zeros((len(offsets), n_frames, *whole.shape[1:]), dtype=whole.dtype)
        for i, k in enumerate(offsets):
            part = whole[k : k + n_frames]
            out[i, : len(part)] = part
        return out

    def __getitem__(self, index: int):
        sample = self.samples[index]
        if self.mode == "whole":
            frames = self._frames(sample, [0], whole_frame_count(sample, self.config))[0]
        elif self.mode == "random-crop":
            frames = self._frames(sample, [self.crop_offset(index)], self.config.n_frames)[0]
        else:
            frames = self._frames(sample, crop_offsets(sample, self.config, self.n_crops), self.config.n_frames)
        return torch.from_numpy(frames.astype(np.float32)), sample.label


__all__ = ["FrameCache", "FrameDataset", "NpyCache", "Sample", "crop_offsets", "frame_window", "load_or_make", "max_crop_offset",
           "read_window", "sample_key", "whole_frame_count"]
