"""What the framing tests compare against (tonic's ToFrame, a plain loop) and feed in (random event streams)."""
from __future__ import annotations

import numpy as np
import tonic

from masnn.datasets.events import make_events

W, H = 16, 12  # non-square on purpose


def garbage_frames(shape, dtype):
    """Stands in for fresh frame memory: the system's is zero anyway, which would hide a frame left uncleared."""
    return np.full(shape, 0x5A, dtype)


def random_events(seed, n=3000, width=W, height=H, t0=10_000, span=200_000, sort=True):
    rng = np.random.default_rng(seed)
    t = t0 + rng.integers(0, span, n)
    if sort:
        t = np.sort(t)
    return make_events(rng.integers(0, width, n), rng.integers(0, height, n), t, rng.integers(0, 2, n))


def tonic_frames(events, width=W, height=H, **kwargs):
    # tonic may touch its input (single-polarity case): give it a copy
    return tonic.transforms.ToFrame(sensor_size=(width, height, 2), **kwargs)(events.copy())


def hand_frames(events, edges, width=W, height=H):
    """Plain loop: frame k counts events with edges[k] <= t < edges[k + 1], at [k, p, y, x]."""
    edges = [int(e) for e in edges]
    frames = np.zeros((len(edges) - 1, 2, height, width), dtype=np.int64)
    for x, y, t, p in zip(events["x"].tolist(), events["y"].tolist(), events["t"].tolist(), events["p"].tolist()):
        for k in range(len(edges) - 1):
            if edges[k] <= t < edges[k + 1]:
                frames[k, 1 if p else 0, y, x] += 1
                break
    return frames
