"""masnn.datasets.transforms.framing against tonic.transforms.ToFrame (tonic 1.7.0) and plain hand-written loops.

Frames are [T, 2, H, W] int16 counts, channel 0 OFF, 1 ON. Sensors are non-square (W != H) wherever
possible so that an x/y swap fails loudly. Streamed framing is tested in test_stream_framing.py.
"""
from __future__ import annotations

import numpy as np
import pytest
from framing_helpers import H, W, garbage_frames, hand_frames, random_events, tonic_frames

from masnn.datasets.events import make_events
from masnn.datasets.transforms import framing
from masnn.datasets.transforms.framing import ToFrames

INT16_MAX = np.iinfo(np.int16).max


@pytest.fixture(autouse=True)
def garbage_in_fresh_memory(monkeypatch):
    """Framing allocates frames uncleared and clears each when it first counts into it. Fresh memory from the
    system is zero anyway, which would hide a frame left uncleared: here that memory holds garbage."""
    monkeypatch.setattr(framing, "uncleared_frames", garbage_frames)


# --------------------------------------------------------------------------------------------------
# Fixed windows: the MA-SNN protocol and tonic's time_window


@pytest.mark.parametrize("size", [(W, H), (12, 20), (32, 32)])
@pytest.mark.parametrize("start_offset", [0, -7_000, 33_333])
def test_protocol_windows_equal_tonic_and_hand_loop(size, start_offset):
    width, height = size
    dt, n_frames = 15_000, 12
    events = random_events(sum(size) + abs(start_offset), width=width, height=height)
    start = int(events["t"][0]) + start_offset
    ours = ToFrames(sensor_size=size, time_window=dt, n_frames=n_frames, start=start)(events)
    theirs = tonic_frames(events, width, height, time_window=dt, start_time=start, end_time=start + n_frames * dt)
    assert ours.shape == theirs.shape == (n_frames, 2, height, width)
    assert ours.dtype == np.int16
    np.testing.assert_array_equal(ours, theirs)
    hand = hand_frames(events, start + dt * np.arange(n_frames + 1), width, height)
    np.testing.assert_array_equal(ours, hand)
    assert ours.sum() > 0


def test_protocol_windows_default_start_is_first_event():
    dt, n_frames = 15_000, 10
    events = random_events(1)
    t0 = int(events["t"][0])
    ours = ToFrames(sensor_size=(W, H), time_window=dt, n_frames=n_frames)(events)
    theirs = tonic_frames(events, time_window=dt, start_time=t0, end_time=t0 + n_frames * dt)
    np.testing.assert_array_equal(ours, theirs)


def test_protocol_windows_beyond_the_events_are_empty():
    """60 frames of 15 ms from the first event, on a sample far shorter than 0.9 s: trailing zeros."""
    events = random_events(2, span=100_000)
    t0 = int(events["t"][0])
    ours = ToFrames(sensor_size=(W, H), time_window=15_000, n_frames=60, start=t0)(events)
    theirs = tonic_frames(events, time_window=15_000, start_time=t0, end_time=t0 + 60 * 15_000)
    assert ours.shape == (60, 2, H, W)
    np.testing.assert_array_equal(ours, theirs)
    assert ours[7:].sum() == 0 and ours.sum() == len(events)


@pytest.mark.parametrize("include_incomplete", [False, True])
@pytest.mark.parametrize("dt", [7_000, 15_000, 50_000, 400_000])
@pytest.mark.parametrize("seed", [0, 1])
def test_time_window_without_n_frames_equals_tonic(include_incomplete, dt, seed):
    events = random_events(seed)
    ours = ToFrames(sensor_size=(W, H), time_window=dt, include_incomplete=include_incomplete)(events)
    theirs = tonic_frames(events, time_window=dt, include_incomplete=include_incomplete)
    assert ours.shape == theirs.shape
    np.testing.assert_array_equal(ours, theirs)


@pytest.mark.parametrize("include_incomplete", [False, True])
def test_time_window_span_an_exact_multiple_of_dt_equals_tonic(include_incomplete):
    # t_last - t_first == 3 * dt: tonic's window count formula is at its edge here
    events = make_events([0, 5, 9, 15, 3], [0, 11, 2, 7, 4], [100, 1_000, 1_000, 2_500, 3_100], [0, 1, 0, 1, 1])
    ours = ToFrames(sensor_size=(W, H), time_window=1_000, include_incomplete=include_incomplete)(events)
    theirs = tonic_frames(events, time_window=1_000, include_incomplete=include_incomplete)
    assert ours.shape == theirs.shape
    np.testing.assert_array_equal(ours, theirs)


def test_time_window_with_start_only_equals_tonic():
    events = random_events(3)
    start = int(events["t"][0]) - 12_345
    ours = ToFrames(sensor_size=(W, H), time_window=10_000, start=start)(events)
    theirs = tonic_frames(events, time_window=10_000, start_time=start)
    np.testing.assert_array_equal(ours, theirs)


# --------------------------------------------------------------------------------------------------
# Event count


@pytest.mark.parametrize("include_incomplete", [False, True])
@pytest.mark.parametrize("n,event_count", [(3000, 500), (3001, 500), (2999, 500), (1000, 1), (777, 777)])
def test_event_count_equals_tonic(include_incomplete, n, event_count):
    events = random_events(n, n=n)
    ours = ToFrames(sensor_size=(W, H), event_count=event_count, include_incomplete=include_incomplete)(events)
    theirs = tonic_frames(events, event_count=event_count, include_incomplete=include_incomplete)
    assert ours.shape == theirs.shape
    np.testing.assert_array_equal(ours, theirs)


def test_event_count_follows_stream_order_not_time():
    events = random_events(4, n=40, sort=False)
    ours = ToFrames(sensor_size=(W, H), event_count=10)(events)
    hand = np.zeros((4, 2, H, W), dtype=np.int64)
    for i, e in enumerate(events):
        hand[i // 10, int(e["p"]), int(e["y"]), int(e["x"])] += 1
    np.testing.assert_array_equal(ours, hand)


def test_event_count_with_fewer_events_than_event_count_equals_tonic():
    events = random_events(5, n=300)
    ours = ToFrames(sensor_size=(W, H), event_count=500)(events)
    theirs = tonic_frames(events, event_count=500)
    assert ours.shape == theirs.shape
    np.testing.assert_array_equal(ours, theirs)


# --------------------------------------------------------------------------------------------------
# n_time_bins: the one deliberate difference from tonic (issue #313)


@pytest.mark.parametrize("n_bins", [1, 5, 7, 20])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_time_bins_keep_what_tonic_drops(n_bins, seed):
    """tonic cuts bins of (t_last - t0) // n and drops everything at or after t0 + n * width (at least the
    events at t_last); masnn's last bin reaches to t_last inclusive. Bins 0..n-2 are tonic's."""
    events = random_events(seed, span=100_003)
    t = events["t"]
    # a few more events at the final timestamp, which tonic always drops
    extra = make_events([1, 2, 3], [4, 5, 6], [t[-1]] * 3, [1, 0, 1])
    events = np.concatenate([events, extra])
    t0, t_last = int(events["t"][0]), int(events["t"][-1])
    width = (t_last - t0) // n_bins
    assert width > 0

    ours = ToFrames(sensor_size=(W, H), n_time_bins=n_bins)(events)
    theirs = tonic_frames(events, n_time_bins=n_bins)
    assert ours.shape == theirs.shape == (n_bins, 2, H, W)
    np.testing.assert_array_equal(ours[:-1], theirs[:-1])

    dropped = np.zeros((2, H, W), dtype=np.int64)
    cut = t0 + n_bins * width
    n_dropped = 0
    for e in events:
        if int(e["t"]) >= cut:
            dropped[int(e["p"]), int(e["y"]), int(e["x"])] += 1
            n_dropped += 1
    assert n_dropped >= 4  # the events at t_last at least
    assert theirs.sum() == len(events) - n_dropped
    np.testing.assert_array_equal(ours[-1], theirs[-1] + dropped)
    assert ours.sum() == len(events)


def test_time_bins_one_event_counts_once():
    one = make_events([13], [2], [123_456], [1])
    ours = ToFrames(sensor_size=(W, H), n_time_bins=10)(one)
    assert tonic_frames(one, n_time_bins=10).sum() == 0  # tonic issue #313
    assert ours.shape == (10, 2, H, W)
    assert ours.sum() == 1
    assert ours[:, 1, 2, 13].sum() == 1


def test_time_bins_span_shorter_than_bin_count_counts_everything():
    events = make_events([0, 1, 2], [0, 1, 2], [50, 51, 52], [0, 1, 0])
    ours = ToFrames(sensor_size=(W, H), n_time_bins=8)(events)
    assert ours.shape == (8, 2, H, W)
    assert ours.sum() == 3


# --------------------------------------------------------------------------------------------------
# Order, bounds, saturation, clipping


@pytest.mark.parametrize(
    "kwargs",
    [
        dict(time_window=15_000, n_frames=8, start=20_000),
        dict(time_window=15_000),
        dict(time_window=15_000, include_incomplete=True),
        dict(n_time_bins=6),
    ],
)
def test_unsorted_input_gives_the_sorted_frames(kwargs):
    events = random_events(6)
    shuffled = events[np.random.default_rng(0).permutation(len(events))]
    assert np.any(np.diff(shuffled["t"]) < 0)
    transform = ToFrames(sensor_size=(W, H), **kwargs)
    expected = transform(events)
    np.testing.assert_array_equal(transform(shuffled), expected)
    if "n_time_bins" not in kwargs:
        tk = {"time_window": kwargs["time_window"], "include_incomplete": kwargs.get("include_incomplete", False)}
        if "start" in kwargs:
            tk.update(start_time=kwargs["start"], end_time=kwargs["start"] + kwargs["n_frames"] * kwargs["time_window"])
        np.testing.assert_array_equal(expected, tonic_frames(events, **tk))


@pytest.mark.parametrize("x,y", [(W, 0), (0, H), (W + 5, H + 5), (-1, 3), (3, -1)])
def test_events_outside_the_frame_raise(x, y):
    events = random_events(7, n=100)
    events["x"][50], events["y"][50] = x, y
    with pytest.raises(ValueError, match="outside"):
        ToFrames(sensor_size=(W, H), time_window=15_000)(events)
    with pytest.raises(ValueError, match="outside"):
        ToFrames(sensor_size=(W, H), n_time_bins=3)(events)


def test_non_square_sensor_coordinates_are_not_swapped():
    # x = 14 exists only on the 16-wide axis, y = 10 only below the 12-high limit
    events = make_events([14, 0], [10, 11], [0, 1], [1, 0])
    frames = ToFrames(sensor_size=(W, H), time_window=10)(events)
    assert frames.shape == (1, 2, H, W)
    assert frames[0, 1, 10, 14] == 1 and frames[0, 0, 11, 0] == 1 and frames.sum() == 2


def test_counts_saturate_at_int16_max():
    n = 40_000
    x = np.full(n + 5, 3)
    y = np.full(n + 5, 7)
    x[n:] = 9  # another pixel with 5 events
    events = make_events(x, y, np.arange(n + 5), np.ones(n + 5))
    frames = ToFrames(sensor_size=(W, H), time_window=10**6, n_frames=1, start=0)(events)
    assert frames.dtype == np.int16
    assert frames[0, 1, 7, 3] == INT16_MAX  # not 40000 - 65536
    assert frames[0, 1, 7, 9] == 5
    assert frames.min() >= 0 and frames.sum() == INT16_MAX + 5


@pytest.mark.parametrize("clip", [1, 3])
def test_clip_caps_counts(clip):
    events = random_events(8, n=4000, span=40_000)
    dt, n_frames, start = 10_000, 4, int(events["t"][0])
    ours = ToFrames(sensor_size=(W, H), time_window=dt, n_frames=n_frames, start=start, clip=clip)(events)
    hand = hand_frames(events, start + dt * np.arange(n_frames + 1))
    assert hand.max() > clip
    np.testing.assert_array_equal(ours, np.minimum(hand, clip))
    if clip == 1:
        assert set(np.unique(ours).tolist()) == {0, 1}


def test_bad_arguments_raise():
    with pytest.raises(ValueError):
        ToFrames(sensor_size=(W, H))
    with pytest.raises(ValueError):
        ToFrames(sensor_size=(W, H), time_window=10, n_time_bins=3)
    with pytest.raises(ValueError):
        ToFrames(sensor_size=(W, H), time_window=0)
