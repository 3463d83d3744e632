"""Training items framed from augmented events: ``EventCache`` and ``AugmentedFrameDataset``.

``FrameDataset`` slices its random crops from frames cached once per sample. Augmented frames differ on every
access, so they are made from events each time, in four steps:

1. ``EventCache`` keeps each sample's events at the sensor's resolution, once per (sample, lead) in
   ``<root>/<key>.npy``: the events from ``lead_us`` before the sample's start (the background-activity filter's
   look-back, 0 without the filter, as FrameDataset's framing reads) to its end, as canonical events (16 bytes
   each: about 1 MB a second of a busy DVS128 recording), memory-mapped on read. Keys and atomic writes are
   FrameCache's (``sample_key``, ``load_or_make``).
2. The crop starts where FrameDataset's random crop of the same (seed, epoch, index) starts. Its events run from
   ``lead_us`` before that start to ``T * dt * reach`` after it, never past the sample's end: ``reach`` is the
   recipe's ``time_reach`` (1.25 with a time stretch down to 0.8, which squeezes 1.25 windows of input into one).
   Times become relative to the crop's start (the stretch is about the window's start).
3. The recipe runs with ``numpy.random.default_rng([seed, epoch, index, AUGMENT_STREAM])``: fixed by (seed,
   epoch, index) whatever the worker or the order of access, and apart from the crop's draw. Then, with
   probability ``time_reversal`` (drawn from the stream REVERSAL_STREAM), the window is played backwards
   (``reverse_time``) and the label becomes that of the reversed motion (``time_reversed_labels``): a clockwise
   arm circle and its counter-clockwise twin then look alike in every respect but their sense, so a model cannot
   tell them apart by anything the renderer happens to draw differently. Reversal drops the look-back before
   the window, so a denoising framing sees none on reversed crops.
4. The events are framed as FrameDataset's are (``StreamFramer``: denoising when the framing asks for it, after
   the augmentation, as a real recording is denoised at inference; the spatial map; T windows of dt from the
   crop's start), so with the "identity" recipe the frames equal FrameDataset's for the same crop.
Validation and test data stay unaugmented, through FrameDataset.
"""
from __future__ import annotations

import math

import numpy as np
import torch

from masnn.datasets.events import EVENT_DTYPE
from masnn.datasets.io.readers import open_recording
from masnn.datasets.loaders.cache import FrameDataset, NpyCache, Sample, read_window, sample_key
from masnn.datasets.loaders.gesture import no_gesture_samples
from masnn.datasets.loaders.table import time_reversed_labels
from masnn.datasets.transforms.augment import reverse_time
from masnn.datasets.transforms.augment_recipe import parse_augment
from masnn.datasets.transforms.augment_spatial import copy_events
from masnn.datasets.transforms.framing import first_index_at_or_after
from masnn.datasets.transforms.pipeline import FramingConfig, frame_events

EVENT_CACHE_VERSION = 1  # bump when what an entry holds changes
# EVENT_DTYPE's layout with its fields listed in memory order: .npy cannot describe fields listed out of order
STORED_DTYPE = np.dtype({"names": ["t", "x", "y", "p"], "formats": ["<i8", "<i2", "<i2", "u1"], "offsets": [0, 8, 10, 12],
                         "itemsize": EVENT_DTYPE.itemsize})
AUGMENT_STREAM = 1  # the augmentation's generator is default_rng([seed, epoch, index, AUGMENT_STREAM])
REVERSAL_STREAM = 2  # whether a crop is played backwards: default_rng([seed, epoch, index, REVERSAL_STREAM])


def check_time_reversal(share: float) -> float:
    """``share`` when it is a probability; ValueError otherwise (the config checks it before any work too)."""
    if not 0 <= share <= 1:
        raise ValueError(f"time_reversal is a probability in [0, 1], got {share}")
    return share


class EventCache(NpyCache):
    """Whole-sample events on disk, one .npy per (sample, lead); see the module docstring."""

    def key(self, sample: Sample, lead_us: int = 0) -> str:
        return sample_key(sample, version=EVENT_CACHE_VERSION, kind="events", lead_us=int(lead_us))

    def sample_events(self, sample: Sample, lead_us: int = 0) -> np.ndarray:
        """The events with start - lead_us <= t < end (memory-mapped on a hit)."""
        stored = self.cached(self.key(sample, lead_us), lambda: read_window(
            sample.path, sample.start_us - lead_us, sample.end_us)[0].view(STORED_DTYPE))
        return stored.view(EVENT_DTYPE)


class AugmentedFrameDataset(FrameDataset):
    """Random crops (float32 [T, 2, H, W], label) framed from events augmented by the recipe ``augment`` (a spec,
    see ``masnn.datasets.transforms.augment_recipe``), a share ``time_reversal`` of them played backwards with
    their labels mapped by ``reversed_labels``; crop placement and ``set_epoch`` are FrameDataset's."""

    def __init__(self, samples: list[Sample], config: FramingConfig = FramingConfig(), augment: str = "identity",
                 seed: int = 0, cache: EventCache | None = None, time_reversal: float = 0.0,
                 reversed_labels: dict[int, int] | None = None):
        super().__init__(samples, config, "random-crop", seed=seed)
        self.time_reversal = check_time_reversal(time_reversal)
        self.reversed_labels = reversed_labels or {}
        self.augment = augment
        self.recipe = parse_augment(augment)
        self.event_cache = cache
        self._sensor_sizes: dict[str, tuple[int, int]] = {}  # per recording
        self._transforms: dict[tuple[int, int], object] = {}  # per sensor size

    def sensor_size(self, path: str) -> tuple[int, int]:
        if path not in self._sensor_sizes:
            with open_recording(path) as recording:
                self._sensor_sizes[path] = recording.info.sensor_size
        return self._sensor_sizes[path]

    def transform(self, sensor_size: tuple[int, int]):
        """The recipe built for a ``sensor_size`` sensor."""
        if sensor_size not in self._transforms:
            self._transforms[sensor_size] = self.recipe.build(sensor_size)
        return self._transforms[sensor_size]

    def crop_events(self, index: int) -> tuple[np.ndarray, int]:
        """(a copy of the crop's events before augmentation, times relative to its start; its absolute start)."""
        sample, config = self.samples[index], self.config
        lead = config.denoise_us or 0
        start = sample.start_us + self.crop_offset(index) * config.dt_us
        reach = self.transform(self.sensor_size(sample.path)).time_reach
        end = min(start + math.ceil(config.n_frames * config.dt_us * reach), sample.end_us)
        if self.event_cache is None:
            events = read_window(sample.path, start - lead, end)[0]
        else:
            whole = self.event_cache.sample_events(sample, lead)
            # a binary search on the records: np.searchsorted would first copy the whole strided time column
            events = copy_events(whole[first_index_at_or_after(whole, start - lead) : first_index_at_or_after(whole, end)])
        events["t"] -= start
        return events, start

    def __getitem__(self, index: int):
        sample = self.samples[index]
        sensor_size = self.sensor_size(sample.path)
        events, _ = self.crop_events(index)
        rng = np.random.default_rng([self.seed, self.epoch, index, AUGMENT_STREAM])
        events = self.transform(sensor_size)(events, rng)  # (n,) sorted by time, inside the sensor
        label = sample.label
        if self.time_reversal and np.random.default_rng([self.seed, self.epoch, index, REVERSAL_STREAM]).random() < self.time_reversal:
            events = reverse_time(events, self.config.window_us)
            label = self.reversed_labels.get(label, label)
        frames = frame_events(events, sensor_size, self.config, 0, self.config.n_frames)  # (T, 2, H, W)
        return torch.from_numpy(frames.astype(np.float32)), label


def training_set(samples: list[Sample], config: FramingConfig, augment: str, seed: int, frame_cache=None,
                 no_gesture: bool = False, time_reversal: float = 0.0, class_names: list[str] | None = None):
    """The training split's dataset: FrameDataset's random crops (through ``frame_cache``), or, with an
    augmentation spec or ``time_reversal`` > 0, AugmentedFrameDataset's (through an EventCache in the frame
    cache's folder /events; reversed labels from ``class_names``); ``no_gesture`` adds the samples' unlabelled
    stretches that hold a whole window (after them, NO_GESTURE)."""
    if no_gesture:
        samples = samples + no_gesture_samples(samples, config.window_us)
    if not parse_augment(augment) and not time_reversal:
        return FrameDataset(samples, config, "random-crop", seed=seed, cache=frame_cache)
    event_cache = None if frame_cache is None else EventCache(frame_cache.root / "events")
    return AugmentedFrameDataset(samples, config, augment or "identity", seed=seed, cache=event_cache,
                                 time_reversal=time_reversal, reversed_labels=time_reversed_labels(class_names or []))


__all__ = ["AUGMENT_STREAM", "REVERSAL_STREAM", "AugmentedFrameDataset", "EventCache", "check_time_reversal", "training_set"]
