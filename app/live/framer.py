"""Live framing: events as they arrive -> windows of the newest T frames at model resolution, one every stride."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from masnn.datasets.transforms.framing import COUNT_DTYPE
from masnn.datasets.transforms.pipeline import FramingConfig
from masnn.datasets.transforms.stream import StreamFramer


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
        self.stream = StreamFramer.from_config(framing, sensor_size, block_frames=1)  # each frame as soon as it is complete
        width, height = self.stream.frame_size
        self.ring = np.zeros((self.steps, 2, height, width), COUNT_DTYPE)
        self.ring_events = np.zeros(self.steps, np.int64)
        self.completed = 0  # frames completed on this connection
        self.windows_made = 0
        self.previous_arrival = self.frame_arrival = 0.0

    @property
    def origin(self) -> int | None:
        """The connection's first event (after denoising): frame 0 starts there."""
        return self.stream.start

    def add(self, events: np.ndarray, arrival: float) -> Framed:
        """Raises UnsortedEvents when stream time goes back: old frames are gone, a new framer must start."""
        completed = self.stream.add(events)
        if self.stream.added_span is None:  # an empty batch, or the filter kept none of it: no frame changed
            return Framed([], 0, 0)
        first_t = self.stream.added_span[0]
        windows, framed = [], 0
        for frame in completed:
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
