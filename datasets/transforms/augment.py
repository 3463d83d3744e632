"""Event-domain augmentation: time stretch, EventDrop's three drops (Gu et al. 2021), polarity balance and mixing,
background noise and hot pixels; ``RandomApply``, ``OneOf`` and ``Compose`` to combine them (and the geometric ones of
``augment_spatial``). ``augment_recipe`` builds a combination from a short spec such as "scale=0.8-1.25,drop=0.3".

Every transform is ``transform(events, rng) -> events``: it returns a new array sorted by time (given one
sorted by time), never changes its input, and draws from the ``rng`` it is given only (no global RNG). Its
parameters are drawn by ``sample(rng, events)``; ``apply(events, params)`` is deterministic, so a test can draw
the same parameters and check the result against a plain reference. An empty input gives an empty output of the
same dtype. Transforms that need the time span (time slice, noise) take it from the events themselves, from the
first to the last event; the time stretch is about t = 0, so callers give times relative to the window start
(``masnn.datasets.loaders.augmented`` does).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from masnn.datasets.events import EVENT_DTYPE
from masnn.datasets.transforms.augment_spatial import as_records, copy_events, log_uniform, select_events


class EventTransform:
    """``__call__`` = ``apply(events, sample(rng, events))``; ``time_reach``: input time one unit of output
    time needs (only a time stretch that compresses needs more than 1)."""

    time_reach = 1.0

    def __call__(self, events: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        return self.apply(events, self.sample(rng, events))


def _check_ratio(name: str, bounds: tuple[float, float]) -> None:
    if not 0 <= bounds[0] <= bounds[1] <= 1:
        raise ValueError(f"{name} ratios must satisfy 0 <= low <= high <= 1, got {bounds}")


def _span(events: np.ndarray) -> tuple[int, int]:
    return int(events["t"][0]), int(events["t"][-1])


def merge_by_time(events: np.ndarray, extra: np.ndarray) -> np.ndarray:
    """``events`` and ``extra`` (both sorted by time) as one array sorted by time; at equal times ``events``
    come first."""
    at = np.searchsorted(events["t"], extra["t"], side="right")
    return np.insert(as_records(events), at, as_records(extra)).view(events.dtype)


# --------------------------------------------------------------------------------------------------- time


@dataclass(frozen=True)
class TimeStretch(EventTransform):
    """t -> floor(t * f), f drawn log-uniformly from ``factor``: f > 1 slows the motion down. Monotonic, so the
    order by time is kept."""

    factor: tuple[float, float] = (0.8, 1.25)

    def __post_init__(self):
        if not 0 < self.factor[0] <= self.factor[1]:
            raise ValueError(f"stretch factors must satisfy 0 < low <= high, got {self.factor}")

    @property
    def time_reach(self) -> float:
        return 1.0 / self.factor[0]

    def sample(self, rng: np.random.Generator, events: np.ndarray) -> float:
        return log_uniform(rng, self.factor)

    def apply(self, events: np.ndarray, factor: float) -> np.ndarray:
        out = copy_events(events)
        out["t"] = np.floor(events["t"] * factor)
        return out


def reverse_time(events: np.ndarray, span_us: int) -> np.ndarray:
    """The window [0, span_us) played backwards: t -> span_us - 1 - t, the order reversed and each polarity
    flipped (a pixel that brightened going forwards darkens going backwards); events outside the window are
    dropped. Time bins of a width that divides ``span_us`` map exactly onto the mirrored bins. Not an
    ``EventTransform``: reversing a motion can change its class (an arm circled clockwise, played backwards, is
    circled counter-clockwise), so the caller that knows the label does it (``masnn.datasets.loaders.augmented``)."""
    inside = events[(events["t"] >= 0) & (events["t"] < span_us)][::-1]
    out = copy_events(inside)
    out["t"] = span_us - 1 - inside["t"]
    out["p"] = 1 - inside["p"]
    return out


# --------------------------------------------------------------------------------------------------- drops


@dataclass(frozen=True)
class DropEvents(EventTransform):
    """EventDrop's random drop: each event is dropped with probability r, r drawn uniformly from ``ratio``."""

    ratio: tuple[float, float] = (0.0, 0.3)

    def __post_init__(self):
        _check_ratio("drop", self.ratio)

    def sample(self, rng: np.random.Generator, events: np.ndarray) -> tuple[float, np.ndarray]:
        """(r, a uniform draw per event): events whose draw is below r go."""
        return rng.uniform(*self.ratio), rng.random(len(events))

    def apply(self, events: np.ndarray, params: tuple[float, np.ndarray]) -> np.ndarray:
        r, u = params
        return select_events(events, u >= r)


@dataclass(frozen=True)
class DropTimeSlice(EventTransform):
    """EventDrop's drop by time: the events in [t0, t0 + r * span) go, r drawn uniformly from ``ratio``, the
    slice placed uniformly inside the events' span."""

    ratio: tuple[float, float] = (0.0, 0.3)

    def __post_init__(self):
        _check_ratio("time-slice", self.ratio)

    def sample(self, rng: np.random.Generator, events: np.ndarray) -> tuple[int, int]:
        r, u = rng.uniform(*self.ratio), rng.random()
        if len(events) == 0:
            return 0, 0
        first, last = _span(events)
        length = int(r * (last - first))
        start = first + int(u * (last - first - length))
        return start, start + length

    def apply(self, events: np.ndarray, window: tuple[int, int]) -> np.ndarray:
        t = events["t"]
        return select_events(events, (t < window[0]) | (t >= window[1]))


@dataclass(frozen=True)
class DropArea(EventTransform):
    """EventDrop's drop by area: the events in a box of r * width x r * height pixels go, r drawn uniformly from
    ``ratio``, the box placed uniformly inside the sensor."""

    sensor_size: tuple[int, int]
    ratio: tuple[float, float] = (0.0, 0.3)

    def __post_init__(self):
        _check_ratio("area", self.ratio)

    def sample(self, rng: np.random.Generator, events: np.ndarray) -> tuple[int, int, int, int]:
        """(x0, y0, width, height) of the box."""
        r = rng.uniform(*self.ratio)
        w, h = (int(round(r * side)) for side in self.sensor_size)
        x0 = int(rng.integers(0, self.sensor_size[0] - w + 1))
        y0 = int(rng.integers(0, self.sensor_size[1] - h + 1))
        return x0, y0, w, h

    def apply(self, events: np.ndarray, box: tuple[int, int, int, int]) -> np.ndarray:
        x0, y0, w, h = box
        x, y = events["x"], events["y"]
        inside = (x >= x0) & (x < x0 + w) & (y >= y0) & (y < y0 + h)
        return select_events(events, ~inside)


@dataclass(frozen=True)
class PolarityBalance(EventTransform):
    """Shifts the ON/OFF balance: one polarity, drawn at random, loses each of its events with probability r,
    r drawn uniformly from ``ratio``."""

    ratio: tuple[float, float] = (0.0, 0.2)

    def __post_init__(self):
        _check_ratio("polarity", self.ratio)

    def sample(self, rng: np.random.Generator, events: np.ndarray) -> tuple[int, float, np.ndarray]:
        """(the polarity thinned, 0 or 1; r; a uniform draw per event): its events whose draw is below r go."""
        return int(rng.integers(0, 2)), rng.uniform(*self.ratio), rng.random(len(events))

    def apply(self, events: np.ndarray, params: tuple[int, float, np.ndarray]) -> np.ndarray:
        polarity, r, u = params
        return select_events(events, ~((u < r) & ((events["p"] != 0) == bool(polarity))))


@dataclass(frozen=True)
class PolarityMix(EventTransform):
    """Mixes the polarities: each event changes polarity with probability r, r drawn uniformly from ``ratio``.
    A real limb's skin and cloth fire both polarities all over a moving region, so its ON and OFF events lie
    close together; a rendered limb's leading and trailing edges stay apart, and a network can learn to read
    the direction of motion from that arrangement alone."""

    ratio: tuple[float, float] = (0.0, 0.3)

    def __post_init__(self):
        _check_ratio("mix", self.ratio)

    def sample(self, rng: np.random.Generator, events: np.ndarray) -> tuple[float, np.ndarray]:
        """(r; a uniform draw per event): the events whose draw is below r change polarity."""
        return rng.uniform(*self.ratio), rng.random(len(events))

    def apply(self, events: np.ndarray, params: tuple[float, np.ndarray]) -> np.ndarray:
        r, u = params
        out = copy_events(events)
        changed = u < r
        out["p"][changed] = 1 - (events["p"][changed] != 0)
        return out


# --------------------------------------------------------------------------------------------------- added events


def _random_events(rng: np.random.Generator, n: int, x_of, y_of, span: tuple[int, int]) -> np.ndarray:
    """n events at times uniform in [first, last] (sorted), polarities at random, at pixels (x_of, y_of)."""
    extra = np.zeros(n, dtype=EVENT_DTYPE)
    extra["t"] = np.sort(rng.integers(span[0], span[1] + 1, size=n))
    extra["x"], extra["y"] = x_of, y_of
    extra["p"] = rng.integers(0, 2, size=n, dtype=np.uint8)
    return extra


@dataclass(frozen=True)
class BackgroundNoise(EventTransform):
    """Background activity: events uniform over the sensor and over the events' span, at a rate (Hz per pixel)
    drawn uniformly from ``rate``; their number is Poisson(rate * pixels * span). Real DVS128 Gesture recordings
    show about 0.1 Hz per pixel in their silent background."""

    sensor_size: tuple[int, int]
    rate: tuple[float, float] = (0.05, 1.0)

    def __post_init__(self):
        if not 0 <= self.rate[0] <= self.rate[1]:
            raise ValueError(f"noise rates must satisfy 0 <= low <= high, got {self.rate}")

    def sample(self, rng: np.random.Generator, events: np.ndarray) -> np.ndarray:
        """The events added."""
        rate = rng.uniform(*self.rate)
        if len(events) == 0:
            return copy_events(events[:0])
        span = _span(events)
        width, height = self.sensor_size
        n = int(rng.poisson(rate * width * height * (span[1] - span[0]) * 1e-6))
        return _random_events(rng, n, rng.integers(0, width, size=n), rng.integers(0, height, size=n), span)

    def apply(self, events: np.ndarray, extra: np.ndarray) -> np.ndarray:
        return merge_by_time(events, extra)


@dataclass(frozen=True)
class HotPixels(EventTransform):
    """A few pixels (a whole number drawn uniformly from ``count``) that fire at a high rate whatever the scene,
    each at its own rate (Hz) drawn uniformly from ``rate``, over the events' span."""

    sensor_size: tuple[int, int]
    count: tuple[int, int] = (1, 3)
    rate: tuple[float, float] = (10.0, 100.0)

    def __post_init__(self):
        if not 0 <= self.count[0] <= self.count[1] or not 0 <= self.rate[0] <= self.rate[1]:
            raise ValueError(f"hot pixel counts and rates must satisfy 0 <= low <= high, got {self.count}, {self.rate}")

    def sample(self, rng: np.random.Generator, events: np.ndarray) -> np.ndarray:
        """The events added."""
        k = int(rng.integers(self.count[0], self.count[1] + 1))
        pixels = rng.integers(0, self.sensor_size[0] * self.sensor_size[1], size=k)  # y * width + x
        rates = rng.uniform(*self.rate, size=k)
        if len(events) == 0:
            return copy_events(events[:0])
        span = _span(events)
        per_pixel = rng.poisson(rates * (span[1] - span[0]) * 1e-6)  # (k,)
        where = rng.permutation(np.repeat(pixels, per_pixel))  # the pixels in random order: times come sorted
        width = self.sensor_size[0]
        return _random_events(rng, len(where), where % width, where // width, span)

    def apply(self, events: np.ndarray, extra: np.ndarray) -> np.ndarray:
        return merge_by_time(events, extra)


# --------------------------------------------------------------------------------------------------- combinations


@dataclass(frozen=True)
class RandomApply(EventTransform):
    """``transform`` with probability ``p``, else the events unchanged (a copy)."""

    transform: Any
    p: float = 0.5

    def __post_init__(self):
        if not 0 <= self.p <= 1:
            raise ValueError(f"probability must lie in [0, 1], got {self.p}")

    @property
    def time_reach(self) -> float:
        return getattr(self.transform, "time_reach", 1.0)

    def sample(self, rng: np.random.Generator, events: np.ndarray) -> bool:
        return bool(rng.random() < self.p)

    def __call__(self, events: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        return self.transform(events, rng) if self.sample(rng, events) else copy_events(events)


@dataclass(frozen=True)
class OneOf(EventTransform):
    """One of ``transforms``, chosen uniformly (EventDrop picks one of its drops per sample this way)."""

    transforms: tuple

    @property
    def time_reach(self) -> float:
        return max((getattr(t, "time_reach", 1.0) for t in self.transforms), default=1.0)

    def sample(self, rng: np.random.Generator, events: np.ndarray) -> int:
        return int(rng.integers(0, len(self.transforms)))

    def __call__(self, events: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        if not self.transforms:
            return copy_events(events)
        return self.transforms[self.sample(rng, events)](events, rng)


@dataclass(frozen=True)
class Compose(EventTransform):
    """``transforms`` in order. An empty Compose is the identity (it returns a copy)."""

    transforms: tuple = ()

    @property
    def time_reach(self) -> float:
        return float(np.prod([getattr(t, "time_reach", 1.0) for t in self.transforms]))

    def __call__(self, events: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        out = events
        for transform in self.transforms:
            out = transform(out, rng)  # a new array each time: the input is never changed
        return copy_events(out) if out is events else out


__all__ = ["BackgroundNoise", "Compose", "DropArea", "DropEvents", "DropTimeSlice", "EventTransform", "HotPixels",
           "OneOf", "PolarityBalance", "RandomApply", "TimeStretch", "merge_by_time", "reverse_time"]
