"""Spatial mapping of events from a sensor's pixel grid to the model's input grid.

DVS128 128x128 -> 32x32 is the MA-SNN protocol: x // 4, y // 4, counts summed. Other sensors (DAVIS346
346x260, DVXplorer 640x480 or 320x240) are centre-cropped to a square and then pooled; "stretch" pools
the whole sensor instead, each axis by its own factor. Pooling counts events, so mapping events and
then framing equals framing and then sum-pooling the frames. Where the crop is not a multiple of the
output, pixel bins differ in width by at most one sensor pixel (floor((x - x0) * out / crop)).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property

import numba
import numpy as np

SPATIAL_MODES = ("crop", "stretch")


def _axis_table(sensor: int, out: int, offset: int, extent: int) -> np.ndarray:
    """Output coordinate of every sensor coordinate along one axis; -1 for those outside the crop."""
    coordinate = np.arange(sensor, dtype=np.int64) - offset
    mapped = coordinate * out // extent
    return np.where((coordinate >= 0) & (coordinate < extent), mapped, -1).astype(np.int16)


@numba.njit(cache=True, nogil=True)
def _remap(events, table_x, table_y, out):
    n = 0
    for i in range(events.shape[0]):
        e = events[i]
        if e.x < 0 or e.x >= table_x.shape[0] or e.y < 0 or e.y >= table_y.shape[0]:
            return -1 - i
        x, y = table_x[e.x], table_y[e.y]
        if x < 0 or y < 0:
            continue
        out[n] = e
        out[n].x = x
        out[n].y = y
        n += 1
    return n


@dataclass(frozen=True)
class SpatialMap:
    """Maps events from ``sensor_size`` (width, height) to ``size`` (width, height) by crop and pooling."""

    sensor_size: tuple[int, int]
    size: tuple[int, int] = (32, 32)
    mode: str = "crop"
    _tables: tuple[np.ndarray, np.ndarray] = field(init=False, repr=False, compare=False)

    def __post_init__(self):
        if self.mode not in SPATIAL_MODES:
            raise ValueError(f"mode must be one of {SPATIAL_MODES}, got {self.mode!r}")
        width, height = self.sensor_size
        if self.mode == "crop":
            side = min(width, height)
            extents = (side, side)
        else:
            extents = (width, height)
        offsets = ((width - extents[0]) // 2, (height - extents[1]) // 2)
        tables = tuple(_axis_table(s, o, off, ext) for s, o, off, ext in zip(self.sensor_size, self.size, offsets, extents))
        object.__setattr__(self, "_tables", tables)

    @property
    def tables(self) -> tuple[np.ndarray, np.ndarray]:
        """Output x of each sensor column and output y of each sensor row (-1: cropped away)."""
        return self._tables

    @cached_property
    def pixel_table(self) -> np.ndarray:
        """Output pixel p * H * W + y * W + x of each sensor pixel p * sensor_H * sensor_W + y * sensor_W + x
        (-1: cropped away), int32: one lookup per event, for the framing kernel."""
        table_x, table_y = (table.astype(np.int32) for table in self._tables)
        width, height = self.size
        plane = np.where((table_y[:, None] >= 0) & (table_x[None, :] >= 0), table_y[:, None] * width + table_x[None, :], -1)
        return np.concatenate([plane.ravel(), np.where(plane >= 0, plane + width * height, -1).ravel()]).astype(np.int32)

    @property
    def crop_box(self) -> tuple[int, int, int, int]:
        """(x0, y0, width, height) of the sensor region that is kept."""
        kept = [np.flatnonzero(table >= 0) for table in self._tables]
        return int(kept[0][0]), int(kept[1][0]), len(kept[0]), len(kept[1])

    def __call__(self, events: np.ndarray) -> np.ndarray:
        return map_events(events, *self._tables)


def map_events(events: np.ndarray, table_x: np.ndarray, table_y: np.ndarray) -> np.ndarray:
    out = np.empty_like(events)
    n = _remap(events, table_x, table_y, out)
    if n < 0:
        i = -1 - n
        raise ValueError(f"event at (x={events['x'][i]}, y={events['y'][i]}) lies outside {len(table_x)}x{len(table_y)}")
    return out[:n]
