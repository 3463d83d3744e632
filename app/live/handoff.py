"""The hand-off between `masnn live`'s reader thread and its classifier: a bounded queue of windows that
drops the oldest when full, so that memory and latency stay bounded whatever the event rate."""
from __future__ import annotations

import threading
from collections import deque

from masnn.live.framer import LiveWindow

WAIT_S = 0.1  # a reader waiting for room (lossless) checks this often whether the run has ended


class Handoff:
    """Windows from the reader to the classifier, at most ``capacity`` held. When full, the oldest waiting
    window is dropped (live: the newest data is the one worth classifying), or with ``lossless`` the reader
    waits."""

    def __init__(self, capacity: int = 1, lossless: bool = False):
        if capacity < 1:
            raise ValueError(f"the hand-off must hold at least one window, got {capacity}")
        self.capacity, self.lossless = capacity, lossless
        self._items: deque[LiveWindow] = deque()
        self._changed = threading.Condition()
        self.closed = False
        self.dropped = 0
        self.high_water = 0  # the most windows it ever held

    def put(self, window: LiveWindow, stop: threading.Event) -> LiveWindow | None:
        """Returns the window dropped to make room, if any."""
        with self._changed:
            while self.lossless and len(self._items) >= self.capacity:
                if stop.is_set():  # the run is over: nothing waits for this window any more
                    return None
                self._changed.wait(WAIT_S)
            dropped = self._items.popleft() if len(self._items) >= self.capacity else None
            if dropped is not None:
                self.dropped += 1
            self._items.append(window)
            self.high_water = max(self.high_water, len(self._items))
            self._changed.notify_all()
            return dropped

    def get(self, timeout: float) -> LiveWindow | None:
        with self._changed:
            if not self._items and not self.closed:
                self._changed.wait(timeout)
            if not self._items:
                return None
            window = self._items.popleft()
            self._changed.notify_all()
            return window

    def close(self) -> None:
        with self._changed:
            self.closed = True
            self._changed.notify_all()

    def drop_waiting(self) -> None:
        """At the end of a run: windows still waiting were never classified, so they count as dropped."""
        with self._changed:
            self.dropped += len(self._items)
            self._items.clear()

    @property
    def finished(self) -> bool:
        return self.closed and not self._items
