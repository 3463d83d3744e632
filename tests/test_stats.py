"""masnn.datasets.stats: recording statistics checked against hand computations and plain Python loops."""
from __future__ import annotations

import json
from collections import Counter

import numpy as np
import pytest
from rich.console import Console

from masnn.datasets.events import make_events
from masnn.datasets.io.readers import read_events
from masnn.datasets.io.writers import write_aedat31, write_npz
from masnn.datasets.stats import PERCENTILES, IntervalHistogram, compare_table, recording_stats, stats_json

DVXPLORER = "dvxplorer_320x240_person.aedat4"


def npz(tmp_path, events, size=(16, 8), name="rec.npz"):
    path = tmp_path / name
    write_npz(path, events, size)
    return path


def random_events(seed=0, n=3000, width=20, height=10, pixels=60):
    """Events on a few pixels (so pixels repeat) with intervals of 0-400 us (zeros included)."""
    rng = np.random.default_rng(seed)
    pool = rng.choice(width * height, pixels, replace=False)
    pixel = rng.choice(pool, n)
    t = 5_000 + np.cumsum(rng.integers(0, 400, n))
    return make_events(pixel % width, pixel // width, t, rng.integers(0, 2, n))


def loop_stats(events, threshold=2):
    """The figures recomputed one event at a time."""
    last, isi, per_pixel = {}, [], Counter()
    for x, y, t in zip(events["x"].tolist(), events["y"].tolist(), events["t"].tolist()):
        if (x, y) in last:
            isi.append(t - last[(x, y)])
        last[(x, y)] = t
        per_pixel[(x, y)] += 1
    active = [c for c in per_pixel.values() if c >= threshold]
    return {"isi": isi, "active_pixels": len(active), "events_per_active_pixel": sum(active) / len(active)}


# Six events: pixel (1,1) at 0, 100, 300 us; (5,2) at 50, 250; (7,7) once at 120. Four ON.
HAND = make_events(x=[1, 5, 1, 7, 5, 1], y=[1, 2, 1, 7, 2, 1], t=[0, 50, 100, 120, 250, 300], p=[1, 0, 1, 1, 1, 0])


def test_hand_built_recording(tmp_path):
    s = recording_stats(npz(tmp_path, HAND))
    assert s["sensor"] == [16, 8]  # [width, height], as inspect and classify give it
    assert s["events"] == 6
    assert s["duration_s"] == pytest.approx(300e-6)
    assert s["event_rate_per_s"] == pytest.approx(20_000)
    assert s["on_fraction"] == pytest.approx(4 / 6)
    assert s["on_off_ratio"] == pytest.approx(2.0)
    # threshold 2: (1,1) with 3 events and (5,2) with 2; the lone event at (7,7) is noise
    assert s["active_pixels"] == 2
    assert s["active_pixel_fraction"] == pytest.approx(2 / 128)
    assert s["events_per_active_pixel"] == pytest.approx(2.5)
    assert s["events_per_active_pixel_per_s"] == pytest.approx(2.5 / 300e-6)
    assert (s["centroid_x"], s["centroid_y"]) == pytest.approx((20 / 6, 14 / 6))
    # x sorted 1 1 1 5 5 7: p1 at rank 0.05 -> 1, p99 at rank 4.95 -> 5 + 0.95 * 2; y sorted 1 1 1 2 2 7
    assert (s["x_p1"], s["x_p99"], s["y_p1"], s["y_p99"]) == pytest.approx((1, 6.9, 1, 6.75))
    # stream intervals 50 50 20 130 50 -> sorted 20 50 50 50 130
    assert [s[f"interval_us_p{q}"] for q in PERCENTILES] == pytest.approx([26, 50, 50, 50, 114])
    # same-pixel intervals 100, 200 at (1,1) and 200 at (5,2)
    assert [s[f"pixel_isi_us_p{q}"] for q in PERCENTILES] == pytest.approx([110, 150, 200, 200, 200])

    strict = recording_stats(npz(tmp_path, HAND), active_threshold=3)
    assert strict["active_pixels"] == 1 and strict["events_per_active_pixel"] == 3


def test_busy_windows_by_hand(tmp_path):
    """100 ms windows. w0: 10 + 5 events on two pixels and a lone one (16, 2 active -> 15/2/0.1 s = 75/s);
    w1: 2 lone events (idle); w2: 4 events on one pixel (busy: 4 >= 0.25 * 16; 40/s);
    w3 would be the fullest (20 events) but the recording ends inside it, so it does not count."""
    parts = [([0] * 10, np.arange(10)), ([1] * 5, 2_000 + np.arange(5)), ([2], [3_000]),
             ([3, 4], [150_000, 160_000]), ([5] * 4, 250_000 + np.arange(4)),
             ([6] * 20, 300_000 + np.arange(20)), ([7], [350_000])]
    pixel = np.concatenate([p for p, _ in parts])
    t = np.concatenate([np.asarray(times) for _, times in parts])
    events = make_events(pixel, np.zeros_like(pixel), t, np.ones_like(pixel))
    path = npz(tmp_path, events)
    for chunk_events in (3, 1 << 18):  # windows that continue across chunks add up
        s = recording_stats(path, window_ms=100, chunk_events=chunk_events)
        assert s["windows"] == 3 and s["busy_windows"] == 2
        assert s["busy_event_rate_per_s"] == pytest.approx((16 + 4) / 0.2)
        assert s["busy_active_pixels"] == pytest.approx(1.5)
        assert s["busy_event_rate_per_active_pixel_per_s"] == pytest.approx((75 + 40) / 2)
    assert recording_stats(path, window_ms=1_000)["busy_windows"] == 0  # shorter than one window


def test_random_recording_matches_python_loop(tmp_path):
    events = random_events()
    s = recording_stats(npz(tmp_path, events, size=(20, 10)))
    hand = loop_stats(events)
    assert s["events"] == len(events)
    assert s["active_pixels"] == hand["active_pixels"]
    assert s["events_per_active_pixel"] == pytest.approx(hand["events_per_active_pixel"])
    # intervals above 2**16 us are kept to 16 significant bits: relative error below 2**-16
    assert [s[f"pixel_isi_us_p{q}"] for q in PERCENTILES] == pytest.approx(np.percentile(hand["isi"], PERCENTILES), rel=2**-15)
    assert [s[f"interval_us_p{q}"] for q in PERCENTILES] == pytest.approx(np.percentile(np.diff(events["t"]), PERCENTILES))
    assert s["centroid_x"] == pytest.approx(events["x"].mean())
    assert [s["y_p1"], s["y_p99"]] == pytest.approx(np.percentile(events["y"], [1, 99]))
    assert s["on_fraction"] == pytest.approx(events["p"].mean())


@pytest.mark.parametrize("writer", ["npz", "aedat31"])
def test_chunking_changes_no_figure(tmp_path, writer):
    events = random_events(seed=1, n=4000)
    if writer == "npz":
        path = npz(tmp_path, events, size=(20, 10))
    else:
        path = tmp_path / "rec.aedat"
        write_aedat31(path, events, packet_events=5)
    whole = recording_stats(path, window_ms=20)
    assert whole["busy_windows"] > 5
    for chunk_events in (1, 7, 1000):
        assert recording_stats(path, window_ms=20, chunk_events=chunk_events) == whole


def test_interval_histogram_exact_below_2_16_us_then_16_bits():
    rng = np.random.default_rng(2)
    small = rng.integers(0, 1 << 16, 5000)
    histogram = IntervalHistogram()
    histogram.add(small[:1234])
    histogram.add(small[1234:])
    assert histogram.percentiles((0, 1, 33, 50, 99.5, 100)) == list(np.percentile(small, (0, 1, 33, 50, 99.5, 100)))
    large = rng.integers(0, 10**11, 5000)
    histogram = IntervalHistogram()
    histogram.add(large)
    assert histogram.percentiles() == pytest.approx(np.percentile(large, PERCENTILES), rel=2**-16)
    assert IntervalHistogram().percentiles() == [None] * len(PERCENTILES)


def test_time_selection_and_json(tmp_path):
    s = recording_stats(npz(tmp_path, HAND), start_us=50, end_us=300)  # events at 50, 100, 120, 250
    assert s["events"] == 4 and s["duration_s"] == pytest.approx(200e-6)
    assert [s[f"pixel_isi_us_p{q}"] for q in PERCENTILES] == pytest.approx([200] * 5)  # (1,1) now fires once
    only_on = HAND[HAND["p"] == 1]
    plain = stats_json([s, recording_stats(npz(tmp_path, only_on, name="on.npz"))])
    assert plain[1]["on_off_ratio"] is None
    assert json.loads(json.dumps(plain, allow_nan=False)) == plain
    assert plain[0]["sensor"] == [16, 8]
    console = Console(record=True, width=200)
    console.print(compare_table([s]))
    assert "16x8" in console.export_text()  # the table writes it as people read it


def test_real_dvxplorer(real_data):
    path = real_data / DVXPLORER
    s = recording_stats(path)
    assert s["events"] == 111_954
    assert 0.2 < s["on_fraction"] < 0.8
    assert s["pixel_isi_us_p50"] > 0
    assert s["busy_windows"] >= 1 and s["busy_event_rate_per_active_pixel_per_s"] > 0
    # against the whole recording in memory: same-pixel intervals by sorting on (pixel, t)
    events, info = read_events(path)
    pixel = events["y"].astype(np.int64) * info.width + events["x"]
    order = np.lexsort((events["t"], pixel))
    same = pixel[order][1:] == pixel[order][:-1]
    isi = np.diff(events["t"][order])[same]
    assert [s[f"pixel_isi_us_p{q}"] for q in PERCENTILES] == pytest.approx(np.percentile(isi, PERCENTILES), rel=2**-15)
    assert recording_stats(path, chunk_events=10_000) == s


def test_real_table_has_a_column_per_file(real_data):
    paths = [real_data / DVXPLORER, *sorted((real_data / "dvs128_aedat2").glob("*walking*.aedat"))[:2]]
    results = [recording_stats(p) for p in paths]
    table = compare_table(results)
    assert len(table.columns) == 1 + len(paths)
    console = Console(record=True, width=250)
    console.print(table)
    text = console.export_text()
    for p in paths:
        assert p.name in text
    assert "pixel isi us p50" in text and "busy event rate per active pixel per s" in text
