"""masnn.datasets.transforms.spatial.SpatialMap against hand-written integer arithmetic and numpy sum-pooling."""
from __future__ import annotations

import numpy as np
import pytest
import tonic

from masnn.datasets.events import make_events
from masnn.datasets.transforms.framing import ToFrames
from masnn.datasets.transforms.spatial import SpatialMap
from masnn.datasets.transforms.stream import iter_time_frames


def random_events(seed, width, height, n=5000, span=300_000):
    rng = np.random.default_rng(seed)
    t = np.sort(rng.integers(0, span, n))
    return make_events(rng.integers(0, width, n), rng.integers(0, height, n), t, rng.integers(0, 2, n))


def every_pixel(width, height):
    """One event per sensor pixel, row by row, with distinct times and alternating polarity."""
    y, x = np.divmod(np.arange(width * height), width)
    return make_events(x, y, np.arange(width * height) * 3, np.arange(width * height) % 2)


def test_dvs128_to_32_is_x_div_4_y_div_4():
    events = random_events(0, 128, 128)
    mapped = SpatialMap((128, 128))(events)
    assert len(mapped) == len(events)
    np.testing.assert_array_equal(mapped["x"], events["x"] // 4)
    np.testing.assert_array_equal(mapped["y"], events["y"] // 4)
    np.testing.assert_array_equal(mapped["t"], events["t"])
    np.testing.assert_array_equal(mapped["p"], events["p"])
    assert mapped.dtype == events.dtype


def test_dvs128_every_output_pixel_sums_a_4x4_block():
    mapped = SpatialMap((128, 128))(every_pixel(128, 128))
    counts = np.zeros((32, 32), dtype=np.int64)
    np.add.at(counts, (mapped["y"], mapped["x"]), 1)
    assert (counts == 16).all()


def test_map_then_frame_equals_frame_then_sum_pool():
    events = random_events(1, 128, 128, n=20_000)
    dt, n_frames, start = 15_000, 20, 0
    # full-size frames from tonic, pooled by hand
    full = tonic.transforms.ToFrame(sensor_size=(128, 128, 2), time_window=dt, start_time=start, end_time=start + n_frames * dt)(events.copy())
    pooled = full.astype(np.int64).reshape(n_frames, 2, 32, 4, 32, 4).sum(axis=(3, 5))
    smap = SpatialMap((128, 128), (32, 32))
    ours = ToFrames(sensor_size=(32, 32), time_window=dt, n_frames=n_frames, start=start)(smap(events))
    np.testing.assert_array_equal(ours, pooled)
    # the same through the streaming framer with the map inside the pass
    chunks = [events[i : i + 999] for i in range(0, len(events), 999)]
    streamed = np.concatenate(list(iter_time_frames(chunks, (128, 128), dt, start=start, end=start + n_frames * dt, block_frames=7, spatial=smap)))
    np.testing.assert_array_equal(streamed, pooled)


def test_map_then_frame_equals_sum_pool_non_square():
    # 64x48 -> 16x12 in stretch mode: 4x4 blocks on a non-square sensor
    events = random_events(2, 64, 48, n=8000)
    full = tonic.transforms.ToFrame(sensor_size=(64, 48, 2), time_window=50_000, start_time=0, end_time=300_000)(events.copy())
    pooled = full.astype(np.int64).reshape(6, 2, 12, 4, 16, 4).sum(axis=(3, 5))
    smap = SpatialMap((64, 48), (16, 12), mode="stretch")
    ours = ToFrames(sensor_size=(16, 12), time_window=50_000, n_frames=6, start=0)(smap(events))
    np.testing.assert_array_equal(ours, pooled)


@pytest.mark.parametrize("sensor,size,mode", [((346, 260), (32, 32), "crop"), ((640, 480), (32, 32), "crop"),
                                               ((240, 320), (24, 24), "crop"), ((64, 48), (16, 12), "stretch")])
def test_streamed_framing_maps_as_the_event_map_does(sensor, size, mode):
    """The framing kernel maps pixels through its own table; mapping the events first (the axis tables,
    checked against arithmetic above) and framing them must give the same frames, cropped pixels dropped."""
    events = random_events(3, *sensor, n=30_000)
    smap = SpatialMap(sensor, size, mode)
    dt, n_frames = 20_000, 15
    expected = ToFrames(sensor_size=size, time_window=dt, n_frames=n_frames, start=0)(smap(events))
    chunks = [events[i : i + 1234] for i in range(0, len(events), 1234)]
    streamed = np.concatenate(list(iter_time_frames(chunks, sensor, dt, start=0, end=n_frames * dt, block_frames=4, spatial=smap)))
    np.testing.assert_array_equal(streamed, expected)
    assert expected.sum() < len(events) if mode == "crop" else expected.sum() == len(events)


def test_streamed_framing_names_the_sensor_for_an_event_outside_it():
    events = random_events(4, 346, 260, n=100)
    events["x"][40] = 346
    with pytest.raises(ValueError, match=r"\(x=346, y=\d+\) lies outside the 346x260 sensor"):
        list(iter_time_frames([events], (346, 260), 10_000, spatial=SpatialMap((346, 260))))


def test_davis346_crop_keeps_centred_square():
    smap = SpatialMap((346, 260), (32, 32), mode="crop")
    assert smap.crop_box == (43, 0, 260, 260)
    events = random_events(3, 346, 260, n=20_000)
    mapped = smap(events)
    keep = (events["x"] >= 43) & (events["x"] < 43 + 260)
    assert 0 < keep.sum() < len(events)
    kept = events[keep]
    assert len(mapped) == len(kept)
    np.testing.assert_array_equal(mapped["x"], (kept["x"].astype(np.int64) - 43) * 32 // 260)
    np.testing.assert_array_equal(mapped["y"], kept["y"].astype(np.int64) * 32 // 260)
    np.testing.assert_array_equal(mapped["t"], kept["t"])
    np.testing.assert_array_equal(mapped["p"], kept["p"])
    assert mapped["x"].min() >= 0 and mapped["x"].max() <= 31 and mapped["y"].max() <= 31


def test_davis346_crop_edges_exactly():
    smap = SpatialMap((346, 260))
    events = make_events([42, 43, 302, 303, 345], [0, 259, 0, 10, 10], [0, 1, 2, 3, 4], [1, 1, 0, 0, 1])
    mapped = smap(events)
    np.testing.assert_array_equal(mapped["x"], [0, 31])
    np.testing.assert_array_equal(mapped["y"], [31, 0])
    np.testing.assert_array_equal(mapped["t"], [1, 2])


def test_portrait_sensor_crops_rows():
    smap = SpatialMap((240, 320), (32, 32))
    assert smap.crop_box == (0, 40, 240, 240)
    events = random_events(4, 240, 320)
    mapped = smap(events)
    keep = (events["y"] >= 40) & (events["y"] < 280)
    np.testing.assert_array_equal(mapped["x"], events["x"][keep].astype(np.int64) * 32 // 240)
    np.testing.assert_array_equal(mapped["y"], (events["y"][keep].astype(np.int64) - 40) * 32 // 240)


def test_dvxplorer_640x480_crop_is_15_pixels_per_output():
    smap = SpatialMap((640, 480), (32, 32))
    assert smap.crop_box == (80, 0, 480, 480)
    events = random_events(5, 640, 480, n=20_000)
    mapped = smap(events)
    keep = (events["x"] >= 80) & (events["x"] < 560)
    kept = events[keep]
    np.testing.assert_array_equal(mapped["x"], (kept["x"].astype(np.int64) - 80) // 15)
    np.testing.assert_array_equal(mapped["y"], kept["y"] // 15)
    columns = smap(every_pixel(640, 1))
    assert (np.bincount(columns["x"], minlength=32) == 15).all()


def test_dvxplorer_lite_320x240_non_integer_factor():
    smap = SpatialMap((320, 240), (32, 32))
    assert smap.crop_box == (40, 0, 240, 240)
    events = random_events(6, 320, 240, n=20_000)
    mapped = smap(events)
    kept = events[(events["x"] >= 40) & (events["x"] < 280)]
    np.testing.assert_array_equal(mapped["x"], np.floor((kept["x"].astype(np.int64) - 40) * 32 / 240).astype(np.int64))
    np.testing.assert_array_equal(mapped["y"], np.floor(kept["y"].astype(np.int64) * 32 / 240).astype(np.int64))
    # every output column gets 7 or 8 sensor columns, every output row 7 or 8 sensor rows
    columns = np.bincount(smap(every_pixel(320, 1))["x"], minlength=32)
    rows = np.bincount(smap(make_events(np.full(240, 160), np.arange(240), np.arange(240), np.zeros(240)))["y"], minlength=32)
    for bins in (columns, rows):
        assert len(bins) == 32 and bins.sum() == 240
        assert set(bins.tolist()) <= {7, 8}


def test_stretch_maps_each_axis_independently():
    smap = SpatialMap((346, 260), (32, 32), mode="stretch")
    assert smap.crop_box == (0, 0, 346, 260)
    events = random_events(7, 346, 260, n=20_000)
    mapped = smap(events)
    assert len(mapped) == len(events)
    np.testing.assert_array_equal(mapped["x"], events["x"].astype(np.int64) * 32 // 346)
    np.testing.assert_array_equal(mapped["y"], events["y"].astype(np.int64) * 32 // 260)
    assert mapped["x"].max() == 31 and mapped["y"].max() == 31


def test_stretch_non_square_output():
    smap = SpatialMap((640, 480), (20, 10), mode="stretch")
    events = random_events(8, 640, 480)
    mapped = smap(events)
    np.testing.assert_array_equal(mapped["x"], events["x"] // 32)
    np.testing.assert_array_equal(mapped["y"], events["y"] // 48)


@pytest.mark.parametrize(
    "sensor,x,y",
    [((128, 128), 128, 0), ((128, 128), 0, 128), ((346, 260), 5, 300), ((346, 260), 346, 5), ((346, 260), -1, 5)],
)
def test_events_outside_the_sensor_raise(sensor, x, y):
    events = random_events(9, *sensor, n=50)
    events["x"][20], events["y"][20] = x, y
    with pytest.raises(ValueError, match="outside"):
        SpatialMap(sensor)(events)


def test_non_square_coordinates_inside_the_sensor_do_not_raise():
    # (300, 5) exists on a 346x260 sensor (it would not if x and y were swapped)
    mapped = SpatialMap((346, 260), mode="stretch")(make_events([300], [5], [0], [1]))
    assert (int(mapped["x"][0]), int(mapped["y"][0])) == (300 * 32 // 346, 5 * 32 // 260)


def test_input_is_not_modified():
    events = random_events(10, 346, 260)
    before = events.copy()
    SpatialMap((346, 260))(events)
    SpatialMap((346, 260), mode="stretch")(events)
    np.testing.assert_array_equal(events, before)


def test_unknown_mode_raises():
    with pytest.raises(ValueError):
        SpatialMap((128, 128), mode="squash")
