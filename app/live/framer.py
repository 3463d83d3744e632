"""Live framing: events as they arrive -> windows of the newest T frames at model resolution, one every stride."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from masnn.datasets.transforms.denoise import (
    filter_background_activity,
    new_filter_state,
)
from masnn.datasets.transforms.framing import (
    COUNT_DTYPE,
    UnsortedEvents,
    _count_cap,
    _FrameBlocks,
)
from masnn.datasets.transforms.pipeline import FramingConfig


@dataclass
class LiveWindow:
    index: int  # windows made on this connection, dropped ones included
    connection: int  # framing restarts on every connection
    first_frame: int  # frame number of frames[0] on this connection
    start_us: int  # stream time
    end_us: int
    frames: np.ndarray  # [T, 2, H, W] int16 counts
    frame_events: np.ndarray  # events counted in each frame
    arrival: float  # perf_counter() when the batch holding the window's last event was handed over
    origin_us: int = 0  # the connection's first event


@dataclass
class Framed:
    windows: list[LiveWindow]
    superseded: int  # windows completed by the same batch as a newer one and never handed over
    framed_events: int  # events in the frames this batch completed


class WindowFramer:
    """Events -> windows of the newest T frames at model resolution, one every ``stride_frames`` frames.

    A frame is complete once an event at or after its end arrives (stream time has passed it); only the
    newest T frames are kept. ``newest_only``: when one batch completes several windows (a burst after a
    silent stream), only the newest is worth classifying; the others count as superseded."""

    def __init__(self, framing: FramingConfig, sensor_size: tuple[int, int], stride_frames: int,
                 connection: int = 0, newest_only: bool = True):
        self.framing, self.stride, self.connection, self.newest_only = framing, stride_frames, connection, newest_only
        self.steps, self.dt = framing.n_frames, framing.dt_us
        self.spatial = framing.spatial_map(sensor_size)
        width, height = framing.output_size(sensor_size)
        self.ring = np.zeros((self.steps, 2, height, width), COUNT_DTYPE)
        self.ring_events = np.zeros(self.steps, np.int64)
        self.denoise = new_filter_state(sensor_size) if framing.denoise_us else None
        self.frame_size = (width, height)
        self.blocks = None
        self.origin = self.last_t = None
        self.completed = 0  # frames completed on this connection
        self.windows_made = 0
        self.previous_arrival = self.frame_arrival = 0.0

    def add(self, events: np.ndarray, arrival: float) -> Framed:
        if self.denoise is not None:
            events = filter_background_activity(events, self.denoise, self.framing.denoise_us)
        if len(events) == 0:
            return Framed([], 0, 0)
        first_t = int(events["t"][0])
        if self.blocks is None:
            self.origin = first_t
            self.blocks = _FrameBlocks(self.frame_size, self.spatial, first_t, self.dt, 1, _count_cap(COUNT_DTYPE, None), COUNT_DTYPE)
        elif first_t < self.last_t:
            raise UnsortedEvents(f"stream time went back from t={self.last_t} to t={first_t} us")
        self.last_t = int(events["t"][-1])
        windows, framed = [], 0
        for frame in self.blocks.add(events):
            frame_end = self.origin + (self.completed + 1) * self.dt
            # the frame's last event came with this batch unless the batch starts after the frame
            framed += self._push(frame[0], arrival if first_t < frame_end else self.previous_arrival)
            if self.completed >= self.steps and (self.completed - self.steps) % self.stride == 0:
                windows.append(self._snapshot())
        self.previous_arrival = arrival
        if self.newest_only and len(windows) > 1:
            return Framed(windows[-1:], len(windows) - 1, framed)
        return Framed(windows, 0, framed)

    def _push(self, frame: np.ndarray, arrival: float) -> int:
        slot = self.completed % self.steps
        self.ring[slot] = frame
        self.ring_events[slot] = events = int(frame.sum())
        self.completed += 1
        self.frame_arrival = arrival
        return events

    def _snapshot(self) -> LiveWindow:
        split = self.completed % self.steps  # the oldest frame's slot
        first = self.completed - self.steps
        window = LiveWindow(self.windows_made, self.connection, first, self.origin + first * self.dt, self.origin + self.completed * self.dt,
                            np.concatenate((self.ring[split:], self.ring[:split])),
                            np.concatenate((self.ring_events[split:], self.ring_events[:split])), self.frame_arrival, self.origin)
        self.windows_made += 1
        return window
