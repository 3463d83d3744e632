"""masnn.realism: window statistics against hand-computed values, the real-vs-synthetic classifiers on made-up
windows (one generator: about 50 %; an obvious difference: about 100 %), the command end to end on tiny files,
and the shared real recordings of people (skipped when absent)."""
from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
from real_data import REAL_DATA

from masnn.datasets.events import make_events
from masnn.datasets.io.writers import write_aedat31, write_npz
from masnn.datasets.transforms.pipeline import FramingConfig
from masnn.realism import (
    Window,
    cross_validate,
    event_timing,
    frame_window,
    real_recordings,
    real_windows,
    window_stats,
)

CONFIG = FramingConfig(dt_us=45_000, n_frames=20, size=32, mode="crop")  # the shipped model's 0.9 s windows


def _at(pixels: list[tuple[int, int, int, int]], width: int = 128) -> np.ndarray:
    """Events from (row, column, count, polarity) at 32x32, placed on a width x 128 sensor's pixels that map
    there (DVS128: column * 4), spread over the first 0.9 s."""
    x, y, p = [], [], []
    for row, col, count, polarity in pixels:
        x += [col * 4 + i % 4 + (width - 128) // 2 for i in range(count)]
        y += [row * 4 + i // 4 % 4 for i in range(count)]
        p += [polarity] * count
    return make_events(x, y, np.linspace(0, 899_999, len(x)).astype(np.int64), p)


def test_window_statistics_match_hand_computed_values():
    # an L of three ON pixels (4 events each), one OFF pixel of 3 events, one noise pixel of 1 event
    events = _at([(10, 10, 4, 1), (11, 10, 4, 1), (11, 11, 4, 1), (0, 0, 3, 0), (31, 0, 1, 0)])
    counts = frame_window(events, (128, 128), CONFIG, 0)
    assert counts.shape == (2, 32, 32) and counts.sum() == 16 and counts[1, 11, 11] == 4 and counts[0, 0, 0] == 3
    stats = window_stats(counts, 0.9)
    # active counts 1, 3, 4, 4, 4: 95th percentile 4, threshold max(2, 0.4) = 2 drops the noise pixel
    assert stats["events_per_s"] == pytest.approx(16 / 0.9)
    assert stats["on_fraction"] == pytest.approx(12 / 16)
    assert stats["active_pixel_fraction"] == pytest.approx(5 / 1024)
    assert stats["events_per_active_pixel"] == pytest.approx(16 / 5)
    assert stats["region_count"] == 2
    assert stats["largest_region_area"] == pytest.approx(3 / 1024)
    assert stats["largest_region_fill"] == pytest.approx(3 / 4)  # the L fills 3 of its 2x2 box
    grid = np.array([[stats[f"activity_r{r}c{c}"] for c in range(4)] for r in range(4)])
    expected = np.zeros((4, 4))
    expected[1, 1], expected[0, 0], expected[3, 0] = 12 / 16, 3 / 16, 1 / 16
    np.testing.assert_allclose(grid, expected)


def test_event_timing_matches_a_plain_loop():
    rng = np.random.default_rng(5)
    n = 400
    x, y = rng.integers(0, 12, n), rng.integers(0, 9, n)
    t = np.sort(rng.integers(0, 200_000, n))
    p = rng.integers(0, 2, n)
    copies = rng.choice(n, 40, replace=False)  # readout-style repeats 0-4 us after their original
    rebounds = rng.choice(np.flatnonzero(p == 1), 60, replace=False)  # OFFs 0.3-2 ms after ON events
    events = make_events(np.r_[x, x[copies], x[rebounds]], np.r_[y, y[copies], y[rebounds]],
                         np.r_[t, t[copies] + rng.integers(0, 5, 40), t[rebounds] + rng.integers(300, 2000, 60)],
                         np.r_[p, np.zeros(40, int), np.zeros(60, int)])
    events = events[np.argsort(events["t"], kind="stable")]
    isolated = repeated = 0
    kept = {}  # (x, y) -> its events' (t, p) in time order, repeats left out
    for i, e in enumerate(events):
        before = events[:i]
        near = (np.abs(before["x"].astype(int) - e["x"]) <= 1) & (np.abs(before["y"].astype(int) - e["y"]) <= 1)
        near &= ~((before["x"] == e["x"]) & (before["y"] == e["y"]))
        isolated += not np.any(near & (e["t"] - before["t"] < 10_000))
        own = before[(before["x"] == e["x"]) & (before["y"] == e["y"])]
        is_repeat = len(own) > 0 and e["t"] - own["t"][-1] <= 4
        repeated += is_repeat
        if not is_repeat:
            kept.setdefault((e["x"], e["y"]), []).append((int(e["t"]), int(e["p"])))
    ons = [(a, b) for seq in kept.values() for a, b in zip(seq, seq[1:] + [None]) if a[1] == 1]
    rebound = sum(b is not None and b[1] == 0 and b[0] - a[0] <= 1500 for a, b in ons) / len(ons)
    polarities = {}  # (45 ms frame from the first event, x, y) -> the polarities fired there
    for e in events:
        polarities.setdefault(((e["t"] - events["t"][0]) // 45_000, e["x"], e["y"]), []).append(int(e["p"]))
    busy = [p for p in polarities.values() if len(p) >= 2]
    mixed = sum(len(set(p)) == 2 for p in busy) / len(busy)
    got = event_timing(events, (12, 9))
    assert got == pytest.approx((isolated / len(events), repeated / len(events), mixed, rebound))
    assert 0.1 < mixed < 0.9 and len(busy) > 20 and 0.1 < rebound < 0.5  # the planted rebounds, some past 1.5 ms
    assert 0.1 < got[0] < 0.9 and got[1] >= 40 / len(events) - 0.01  # both sides of the filter; the planted repeats
    assert all(np.isnan(v) for v in event_timing(events[:0], (12, 9)))


def test_other_sensors_are_cropped_and_pooled_as_the_classifier_maps_them():
    # DVXplorer 320x240: the centred 240x240 square (x 40..279) is pooled to 32x32 (7.5 sensor pixels a pixel)
    events = make_events([39, 40, 279, 280], [0, 0, 239, 239], [0, 1, 2, 3], [1, 1, 1, 1])
    counts = frame_window(events, (320, 240), CONFIG, 0)
    assert counts.sum() == 2 and counts[1, 0, 0] == 1 and counts[1, 31, 31] == 1


def _windows(rng, groups: int, per_group: int, rate: float = 1.0, on: float = 0.5, prefix: str = "g") -> list[Window]:
    """Poisson windows: a person-sized blob at a random place over sparse noise."""
    rows, cols = np.mgrid[:32, :32]
    windows = []
    for g in range(groups):
        for _ in range(per_group):
            cy, cx = rng.uniform(10, 22, 2)
            lam = 0.3 + 20 * rate * np.exp(-((rows - cy) ** 2 + (cols - cx) ** 2) / 18)
            total = rng.poisson(lam)
            on_counts = rng.binomial(total, on)
            windows.append(Window(f"{prefix}{g}", 0, np.stack([total - on_counts, on_counts]), 0.9))
    return windows


def test_one_generator_is_indistinguishable_and_a_difference_is_found():
    rng = np.random.default_rng(1)
    real = _windows(rng, 4, 8, prefix="real")
    same = cross_validate(real, _windows(rng, 8, 8, prefix="syn"), seed=0)
    assert [f["real"] for f in same["folds"]] == [8] * 4 and [f["synthetic"] for f in same["folds"]] == [8] * 4
    assert all(0.25 <= same["overall"][kind] <= 0.75 for kind in ("statistics", "cnn")), same["overall"]
    doubled = cross_validate(real, _windows(rng, 8, 8, rate=2.0, prefix="syn"), seed=0)
    assert all(doubled["overall"][kind] >= 0.9 for kind in ("statistics", "cnn")), doubled["overall"]
    all_on = cross_validate(real, _windows(rng, 8, 8, on=1.0, prefix="syn"), seed=0)
    assert all_on["overall"]["statistics"] >= 0.95, all_on["overall"]
    assert cross_validate(real, _windows(np.random.default_rng(1), 8, 8, rate=2.0), seed=3)["folds"] == \
        cross_validate(real, _windows(np.random.default_rng(1), 8, 8, rate=2.0), seed=3)["folds"]  # per seed


def test_one_real_recording_is_refused():
    rng = np.random.default_rng(0)
    with pytest.raises(ValueError, match="at least two real recordings"):
        cross_validate(_windows(rng, 1, 4), _windows(rng, 2, 4), seed=0)


def _person(rng, seconds: float, rate: float, width: int = 128) -> np.ndarray:
    n = int(seconds * rate)
    x = np.clip(rng.normal(64, 12, n), 0, 127).astype(int) + (width - 128) // 2
    y = np.clip(rng.normal(64, 20, n), 0, 127).astype(int)
    return make_events(x, y, np.sort(rng.integers(0, int(seconds * 1e6), n)), rng.integers(0, 2, n))


def test_the_command_runs_end_to_end_on_tiny_files(tmp_path):
    rng = np.random.default_rng(0)
    real = tmp_path / "real"
    real.mkdir()
    write_npz(real / "a.npz", _person(rng, 2.0, 5000), (128, 128))
    write_npz(real / "b.npz", _person(rng, 1.2, 8000, width=320), (320, 240))
    folder = tmp_path / "syn" / "DvsGesture"
    folder.mkdir(parents=True)
    names = [f"user{u:02d}_lab.aedat" for u in (1, 2, 3)]
    for name in names:
        write_aedat31(folder / name, _person(rng, 3.0, 20000))
        (folder / name.replace(".aedat", "_labels.csv")).write_text("class,startTime_usec,endTime_usec\n1,0,1500000\n2,1500000,3000000\n")
    (folder / "trials_to_train.txt").write_text("\n".join(names[:2]) + "\n")
    (folder / "trials_to_test.txt").write_text(names[2] + "\n")
    out = tmp_path / "report.json"
    result = subprocess.run([sys.executable, "-m", "masnn", "synth", "realism", "--real", str(real), "--synthetic",
                             str(tmp_path / "syn"), "--windows", "2", "--users", "2", "--json", str(out)],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert "real vs synthetic" in result.stdout and "events per active pixel" in result.stdout
    report = json.loads(out.read_text())
    assert [r["windows"] for r in report["real"]["recordings"]] == [2, 2]
    assert report["synthetic"]["recordings"] == 2 and report["synthetic"]["windows"] == 8  # users 1 and 2 only
    assert len(report["classifier"]["folds"]) == 2 and set(report["classifier"]["overall"]) == {"statistics", "cnn"}


@pytest.mark.skipif(not (REAL_DATA / "dvsgesture_bs2").is_dir(), reason=f"no real recordings at {REAL_DATA} (set MASNN_REAL_DATA)")
def test_the_real_recordings_of_people_and_their_windows():
    names = [path.name for path in real_recordings(REAL_DATA)]
    assert "class04_right_arm_clockwise.bs2" in names and "neal_walking.aedat" in names
    assert not any(name.startswith(("prophesee", "davis346")) for name in names)  # no people in those
    windows, listing = real_windows(sorted((REAL_DATA / "dvsgesture_bs2").glob("*.bs2")), CONFIG, 4)
    assert [r["windows"] for r in listing] == [2, 2, 2]  # 1.45 s clips: two overlapping 0.9 s windows
    for window in windows:
        stats = window_stats(window.counts, window.seconds)
        assert 30_000 < stats["events_per_s"] < 150_000 and 0.4 < stats["on_fraction"] < 0.6  # the figures
