"""What the benchmarks share: synthetic event streams, process memory, best-of-N timing."""
from __future__ import annotations

import time

import numpy as np

from masnn.datasets.events import make_events

DVS128 = (128, 128)


def moving_blob_events(n: int, duration_us: int, sensor=DVS128, seed: int = 0, t0: int = 0) -> np.ndarray:
    """Events of a blob circling the sensor plus 5% uniform noise: spatial locality like a moving arm."""
    rng = np.random.default_rng(seed)
    t = np.sort(rng.integers(0, duration_us, n)) + t0
    width, height = sensor
    phase = 2 * np.pi * (t - t0) / 1e6  # one turn a second
    centre_x = width / 2 + 0.3 * width * np.cos(phase)
    centre_y = height / 2 + 0.3 * height * np.sin(phase)
    x = np.clip(np.rint(centre_x + rng.normal(0, width / 16, n)), 0, width - 1)
    y = np.clip(np.rint(centre_y + rng.normal(0, height / 16, n)), 0, height - 1)
    noise = rng.random(n) < 0.05
    x[noise] = rng.integers(0, width, noise.sum())
    y[noise] = rng.integers(0, height, noise.sum())
    return make_events(x, y, t, rng.random(n) < 0.5)


def _status_mb(field: str) -> float:
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith(f"{field}:")) / 1024


def peak_resident_mb() -> float:
    """This process's peak resident memory. VmHWM, not ru_maxrss: Linux carries ru_maxrss over exec, so a
    child process would report its parent's size."""
    return _status_mb("VmHWM")


def resident_mb() -> float:
    """This process's resident memory now."""
    return _status_mb("VmRSS")


def best_time(fn, repeats: int) -> float:
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best
