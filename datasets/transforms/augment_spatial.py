"""Event-domain geometric augmentation (NDA, Li et al. 2022): scale, rotation and shear about the sensor's centre,
and shift. Each is one affine map of pixel positions, ``affine_events``.

An event stands for a point inside its pixel: by default a point drawn uniformly in the pixel per event (the
"sub-pixel" offsets), else the pixel's centre. The point is mapped and the event lands in the pixel that holds
the image; events that land off the sensor are dropped. Drawing the point spreads a scaled or rotated pixel
over every pixel it covers, instead of mapping whole pixels to whole pixels, which leaves empty or doubled
rows and columns in a regular (moire) pattern: an artefact of its own for the network to learn. Either way the
identity maps every event to its own pixel, and the order of the events (by time) is kept.

No horizontal flip: left and right are part of the gesture labels (right arm / left arm).
Randomness: each transform draws its parameters, then the sub-pixel offsets, from the ``rng`` it is given
(``sample``); ``apply`` is deterministic. Positive angles turn the image clockwise on screen (y points down).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import numba
import numpy as np


class AffineParams(NamedTuple):
    matrix: np.ndarray  # (2, 2), about the sensor's centre
    offset: tuple[float, float]  # pixels, added after the matrix
    subpixel: np.ndarray | None  # (n, 2) points in [0, 1) inside each event's pixel; None: the pixel centres


def affine_events(events: np.ndarray, params: AffineParams, sensor_size: tuple[int, int]) -> np.ndarray:
    """A copy of ``events`` at positions floor(A (q - c) + c + offset), q the event's point in its pixel and c
    the sensor's centre (width / 2, height / 2); events mapped off the width x height sensor are left out."""
    (a, b), (c, d) = np.asarray(params.matrix, dtype=np.float64)
    subpixel = _NO_SUBPIXEL if params.subpixel is None else np.ascontiguousarray(params.subpixel, dtype=np.float32)
    out = np.empty_like(events)
    n = _affine(events, a, b, c, d, float(params.offset[0]), float(params.offset[1]), subpixel, *sensor_size, out)
    return out[:n]


_NO_SUBPIXEL = np.zeros((0, 2), dtype=np.float32)


@numba.njit(cache=True, nogil=True)
def _affine(events, a, b, c, d, dx, dy, subpixel, width, height, out):
    """Writes the mapped events that stay on the sensor to ``out``; returns their number. One pass: a third of the
    time of the same arithmetic over whole numpy columns."""
    cx, cy = width / 2, height / 2
    centres = subpixel.shape[0] == 0
    n = 0
    for i in range(events.shape[0]):
        e = events[i]
        qx = np.float64(e.x) + (0.5 if centres else np.float64(subpixel[i, 0])) - cx  # float64 throughout
        qy = np.float64(e.y) + (0.5 if centres else np.float64(subpixel[i, 1])) - cy
        x = np.floor(a * qx + b * qy + cx + dx)
        y = np.floor(c * qx + d * qy + cy + dy)
        if 0 <= x < width and 0 <= y < height:
            out[n] = e
            out[n].x = np.int16(x)
            out[n].y = np.int16(y)
            n += 1
    return n


def as_records(events: np.ndarray) -> np.ndarray:
    """Whole records as opaque bytes: numpy copies a structured array field by field, several times slower."""
    return events.view(np.dtype((np.void, events.dtype.itemsize)))


def select_events(events: np.ndarray, which) -> np.ndarray:
    """events[which] (a mask or indices), copied record by record."""
    return as_records(events)[which].view(events.dtype)


def copy_events(events: np.ndarray) -> np.ndarray:
    """A copy of ``events``, a plain ndarray (also of a memory-mapped one)."""
    return np.array(as_records(events)).view(events.dtype)


def mirror_horizontally(events: np.ndarray, width: int) -> np.ndarray:
    """The scene seen in a mirror: x -> width - 1 - x. Not a random augmentation: the subject's right and left
    swap, and with them the labels of sided classes (``masnn.datasets.loaders.table.mirrored_labels``)."""
    out = copy_events(events)
    out["x"] = width - 1 - events["x"]
    return out


def _subpixel(rng: np.random.Generator, n: int, enabled: bool) -> np.ndarray | None:
    return rng.random((n, 2), dtype=np.float32) if enabled else None  # float32: half the time of float64


def log_uniform(rng: np.random.Generator, bounds: tuple[float, float]) -> float:
    """A factor in [low, high] whose logarithm is uniform: 0.8-1.25 shrinks as often as it enlarges."""
    low, high = bounds
    return float(np.exp(rng.uniform(np.log(low), np.log(high))))


class _Affine:
    """``__call__`` of the affine transforms: sample, then apply."""

    sensor_size: tuple[int, int]

    def __call__(self, events: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        return self.apply(events, self.sample(rng, events))

    def apply(self, events: np.ndarray, params: AffineParams) -> np.ndarray:
        return affine_events(events, params, self.sensor_size)


@dataclass(frozen=True)
class RandomScale(_Affine):
    """Zoom about the sensor's centre by a factor drawn log-uniformly from ``factor``."""

    sensor_size: tuple[int, int]
    factor: tuple[float, float] = (0.8, 1.25)
    subpixel: bool = True

    def __post_init__(self):
        if not 0 < self.factor[0] <= self.factor[1]:
            raise ValueError(f"scale factors must satisfy 0 < low <= high, got {self.factor}")

    def sample(self, rng: np.random.Generator, events: np.ndarray) -> AffineParams:
        s = log_uniform(rng, self.factor)
        return AffineParams(np.array([[s, 0.0], [0.0, s]]), (0.0, 0.0), _subpixel(rng, len(events), self.subpixel))


@dataclass(frozen=True)
class RandomRotation(_Affine):
    """Rotation about the sensor's centre by an angle drawn uniformly from [-degrees, degrees]."""

    sensor_size: tuple[int, int]
    degrees: float = 10.0
    subpixel: bool = True

    def sample(self, rng: np.random.Generator, events: np.ndarray) -> AffineParams:
        angle = np.deg2rad(rng.uniform(-self.degrees, self.degrees))
        cos, sin = np.cos(angle), np.sin(angle)
        return AffineParams(np.array([[cos, -sin], [sin, cos]]), (0.0, 0.0), _subpixel(rng, len(events), self.subpixel))


@dataclass(frozen=True)
class RandomShear(_Affine):
    """Shear about the sensor's centre: x += kx (y - cy), y += ky (x - cx), kx and ky drawn uniformly from
    [-shear, shear] (0.1 tilts a vertical line by about 6 degrees)."""

    sensor_size: tuple[int, int]
    shear: float = 0.1
    subpixel: bool = True

    def sample(self, rng: np.random.Generator, events: np.ndarray) -> AffineParams:
        kx, ky = rng.uniform(-self.shear, self.shear, size=2)
        return AffineParams(np.array([[1.0, kx], [ky, 1.0]]), (0.0, 0.0), _subpixel(rng, len(events), self.subpixel))


@dataclass(frozen=True)
class RandomShift(_Affine):
    """Translation by whole pixels, each axis by round(u * fraction * side) with u uniform in [-1, 1]."""

    sensor_size: tuple[int, int]
    fraction: float = 0.1

    def sample(self, rng: np.random.Generator, events: np.ndarray) -> AffineParams:
        u = rng.uniform(-1.0, 1.0, size=2)
        dx, dy = (float(np.round(v * self.fraction * side)) for v, side in zip(u, self.sensor_size))
        return AffineParams(np.eye(2), (dx, dy), None)


@dataclass(frozen=True)
class AffineChain(_Affine):
    """Affine transforms as one map: each step's parameters drawn in turn (a step (transform, p) is taken with
    probability p, drawn first when p < 1), composed, and applied once, with one set of sub-pixel points. One
    rounding instead of one per step, and a fraction of the time. The steps' own sub-pixel draws are not used."""

    sensor_size: tuple[int, int]
    steps: tuple[tuple[_Affine, float], ...]
    subpixel: bool = True

    def sample(self, rng: np.random.Generator, events: np.ndarray) -> AffineParams:
        matrix, offset = np.eye(2), np.zeros(2)
        for transform, p in self.steps:
            if p < 1 and not rng.random() < p:
                continue
            step = transform.sample(rng, events[:0])  # no events: no per-event draws
            matrix, offset = step.matrix @ matrix, step.matrix @ offset + np.asarray(step.offset)
        return AffineParams(matrix, (float(offset[0]), float(offset[1])), _subpixel(rng, len(events), self.subpixel))


__all__ = ["AffineChain", "AffineParams", "RandomRotation", "RandomScale", "RandomShear", "RandomShift", "affine_events", "as_records", "copy_events",
           "log_uniform", "mirror_horizontally", "select_events"]
