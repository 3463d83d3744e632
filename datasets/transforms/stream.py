"""Streaming framing: event chunks as they come -> (denoise) -> spatial map -> fixed-window frames, a block
at a time.

``StreamFramer`` is the one place where chunks become frames: recordings (``pipeline.iter_recording_frames``,
and through it the frame cache and `masnn classify`), the live framer (one-frame blocks) and
``iter_time_frames`` (below) all go through it. However a stream is cut into chunks, its frames equal those
of the whole stream framed at once: the filter's state and the block being filled carry over from chunk to
chunk, and the pixel map runs inside the compiled framing pass.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Iterable, Iterator

import numpy as np

from masnn.datasets.transforms.denoise import filter_background_activity, new_filter_state
from masnn.datasets.transforms.framing import (
    COUNT_DTYPE,
    UnsortedEvents,
    count_cap,
    count_into_frames,
    first_index_at_or_after,
    uncleared_frames,
)

if TYPE_CHECKING:
    from masnn.datasets.transforms.pipeline import FramingConfig
    from masnn.datasets.transforms.spatial import SpatialMap


class StreamFramer:
    """Frames of a time-ordered stream of event chunks; frame k covers [start + k * dt, start + (k + 1) * dt).

    ``add`` passes a chunk through the background-activity filter (``denoise_us``; None is off), leaves out
    events before ``start`` (they still support later ones in the filter) and at or after ``end``, counts
    the rest through ``spatial`` (a SpatialMap from ``sensor_size``, or None) and returns the blocks of
    ``block_frames`` frames they complete: a frame is complete once an event at or after its end arrives.
    ``finish`` returns the rest: frames up to the one holding end - 1 when ``end`` is given, else up to the
    one holding the last event. Memory holds one block, whatever the stream's length.

    ``start`` defaults to the first event kept by the filter. Counts saturate at ``clip`` (or the dtype's
    maximum). Events must come in time order, within and across chunks (UnsortedEvents otherwise).
    """

    def __init__(self, sensor_size: tuple[int, int], time_window: int, start: int | None = None, end: int | None = None,
                 spatial: SpatialMap | None = None, denoise_us: int | None = None, block_frames: int = 64,
                 clip: int | None = None, dtype=COUNT_DTYPE):
        self.sensor_size, self.time_window = sensor_size, time_window
        self.start, self.end = start, end
        self.spatial = spatial
        self.frame_size = sensor_size if spatial is None else spatial.size
        self.denoise_us = denoise_us
        self.block_frames, self.dtype = block_frames, dtype
        self.cap = count_cap(dtype, clip)
        self.added_span: tuple[int, int] | None = None  # (first, last) time the latest add kept after denoising
        self._filter_state = new_filter_state(sensor_size) if denoise_us else None
        self._newest_t: int | None = None
        self._block: np.ndarray | None = None
        self._block_start = 0  # frame number of the block's first frame; earlier frames are out
        self._cleared = 0  # leading frames of the block that hold counts; the rest is uninitialised memory
        self._last_frame = -1  # the frame of the newest event counted

    @classmethod
    def from_config(cls, config: FramingConfig, sensor_size: tuple[int, int], start: int | None = None,
                    end: int | None = None, block_frames: int = 64) -> StreamFramer:
        """The model-input frames of ``config`` (its dt, spatial map and denoising); ``n_frames`` does not
        bound the stream: ``start`` and ``end`` do."""
        return cls(sensor_size, config.dt_us, start, end, config.spatial_map(sensor_size), config.denoise_us, block_frames)

    def add(self, events: np.ndarray) -> Iterator[np.ndarray]:
        """Filters and checks ``events`` at once; the returned blocks are counted as they are drawn, so draw
        them all before the next ``add``."""
        return self._count(self._kept(events))

    def finish(self) -> Iterator[np.ndarray]:
        """The frames still held, and empty ones after them, to the stream's last frame."""
        last = self._final_frame()
        if last is None:
            return
        yield from self._advance_to(last)
        n = last - self._block_start + 1
        if n > 0:
            yield self._completed_block()[:n]

    def iter_blocks(self, chunks: Iterable[np.ndarray]) -> Iterator[np.ndarray]:
        """Every block of a whole stream: each chunk added, then ``finish``."""
        for chunk in chunks:
            yield from self.add(chunk)
        yield from self.finish()

    # -- a chunk's way in --

    def _kept(self, events: np.ndarray) -> np.ndarray:
        """The events to count: denoised, checked against the previous chunk, within [start, end)."""
        if self._filter_state is not None:
            events = filter_background_activity(events, self._filter_state, self.denoise_us)
        if len(events) == 0:
            self.added_span = None
            return events
        first, last = int(events["t"][0]), int(events["t"][-1])
        if self._newest_t is not None and first < self._newest_t:
            raise UnsortedEvents(f"stream time went back from t={self._newest_t} to t={first} us")
        self._newest_t, self.added_span = last, (first, last)
        if self.start is None:
            self.start = first
        stop = len(events) if self.end is None else first_index_at_or_after(events, self.end)
        return events[first_index_at_or_after(events, self.start) : stop]

    def _final_frame(self) -> int | None:
        if self.end is not None and self.start is not None:
            return (self.end - 1 - self.start) // self.time_window
        return self._last_frame if self._last_frame >= 0 else None

    # -- counting, block by block --

    def _frame_of(self, t: int) -> int:
        return (t - self.start) // self.time_window

    def _count(self, events: np.ndarray) -> Iterator[np.ndarray]:
        begin = 0
        while begin < len(events):
            yield from self._advance_to(self._frame_of(int(events["t"][begin])))
            if self._block is None:
                self._block = uncleared_frames((self.block_frames, 2, self.frame_size[1], self.frame_size[0]), self.dtype)
                self._cleared = 0
            stop, self._cleared = count_into_frames(events, begin, self._block_edges(), self.spatial, self.cap, self._block, self._cleared)
            self._last_frame = self._frame_of(int(events["t"][stop - 1]))
            begin = stop

    def _block_edges(self) -> np.ndarray:
        frames = np.arange(self._block_start, self._block_start + self.block_frames + 1, dtype=np.int64)
        return self.start + frames * self.time_window

    def _advance_to(self, frame: int) -> Iterator[np.ndarray]:
        """Hands over the blocks that end before ``frame``: stream time has passed them."""
        while frame >= self._block_start + self.block_frames:
            yield self._completed_block()
            self._block = None
            self._block_start += self.block_frames

    def _completed_block(self) -> np.ndarray:
        if self._block is None:  # no event fell in it
            return np.zeros((self.block_frames, 2, self.frame_size[1], self.frame_size[0]), self.dtype)
        self._block[self._cleared :] = 0
        return self._block


def iter_time_frames(
    chunks: Iterable[np.ndarray],
    sensor_size: tuple[int, int],
    time_window: int,
    start: int | None = None,
    end: int | None = None,
    block_frames: int = 64,
    clip: int | None = None,
    dtype=COUNT_DTYPE,
    spatial=None,
) -> Iterator[np.ndarray]:
    """Fixed-window frames of a time-ordered stream of event chunks, in blocks of at most ``block_frames``.

    Frame k covers [start + k * dt, start + (k + 1) * dt), ``start`` defaulting to the first event. A block
    is emitted once complete, so memory holds one block whatever the recording's length. The frames run to
    the one containing end - 1 when ``end`` is given, else to the one holding the last event; concatenated,
    they equal ``frames_by_time(all_events, ..., include_incomplete=True)``, except that when the last
    event lies exactly on a window boundary, tonic's frame count (which frames_by_time keeps) leaves it
    out, while the stream opens one more frame for it: a stream never drops an event.
    ``spatial`` (a SpatialMap from ``sensor_size``) maps pixels inside the same pass; the frames then
    have the map's output size.
    """
    framer = StreamFramer(sensor_size, time_window, start, end, spatial=spatial, block_frames=block_frames, clip=clip, dtype=dtype)
    return framer.iter_blocks(chunks)
