"""masnn.datasets.transforms.denoise against tonic.functional.denoise_numpy (4-neighbourhood) and a hand-written loop."""
from __future__ import annotations

import numpy as np
import pytest
from tonic.functional import denoise_numpy

from masnn.datasets.events import make_events
from masnn.datasets.transforms.denoise import (
    DenoiseBackgroundActivity,
    DropPixels,
    filter_background_activity,
    find_hot_pixels,
    new_filter_state,
)

W, H = 16, 12  # non-square on purpose


def random_events(seed, n=3000, width=W, height=H, t0=0, span=1_000_000, unique_t=False):
    rng = np.random.default_rng(seed)
    if unique_t:
        t = t0 + np.sort(rng.choice(span, n, replace=False))
    else:
        t = t0 + np.sort(rng.integers(0, span, n))
    events = make_events(rng.integers(0, width, n), rng.integers(0, height, n), t, rng.integers(0, 2, n))
    # pin the extent: tonic derives the sensor size from the largest coordinates
    events["x"][0], events["y"][0] = width - 1, height - 1
    return events


def hand_filter(events, width, height, filter_time, diagonal):
    """Keeps an event when a neighbouring pixel (not itself) fired less than filter_time earlier."""
    last = {}
    keep = []
    if diagonal:
        offsets = [(dx, dy) for dx in (-1, 0, 1) for dy in (-1, 0, 1) if (dx, dy) != (0, 0)]
    else:
        offsets = [(-1, 0), (1, 0), (0, -1), (0, 1)]
    for i, (x, y, t) in enumerate(zip(events["x"].tolist(), events["y"].tolist(), events["t"].tolist())):
        last[(x, y)] = t
        for dx, dy in offsets:
            nx, ny = x + dx, y + dy
            if 0 <= nx < width and 0 <= ny < height and (nx, ny) in last and t - last[(nx, ny)] < filter_time:
                keep.append(i)
                break
    return events[np.array(keep, dtype=np.int64)]


def ba(events, filter_time, neighbourhood, width=W, height=H):
    return filter_background_activity(events, new_filter_state((width, height)), filter_time, neighbourhood)


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("filter_time", [2_000, 10_000, 50_000])
def test_four_neighbourhood_equals_tonic(seed, filter_time):
    # tonic starts as if every pixel fired at t = 0: keep every timestamp >= filter_time
    events = random_events(seed, t0=filter_time)
    ours = ba(events, filter_time, 4)
    theirs = denoise_numpy(events.copy(), filter_time=filter_time)
    assert 0 < len(ours) < len(events)
    np.testing.assert_array_equal(ours, theirs)
    np.testing.assert_array_equal(ours, hand_filter(events, W, H, filter_time, diagonal=False))


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("filter_time", [2_000, 10_000, 50_000])
def test_eight_neighbourhood_equals_hand_loop(seed, filter_time):
    events = random_events(seed)
    ours = ba(events, filter_time, 8)
    hand = hand_filter(events, W, H, filter_time, diagonal=True)
    assert 0 < len(hand) < len(events)
    np.testing.assert_array_equal(ours, hand)
    # the diagonal neighbours add support
    assert len(ours) > len(ba(events, filter_time, 4))


def test_diagonal_support_only_with_eight_neighbours():
    events = make_events([5, 6], [5, 6], [100, 150], [1, 0])
    assert len(ba(events, 1_000, 4)) == 0
    kept = ba(events, 1_000, 8)
    np.testing.assert_array_equal(kept, events[1:])


def test_non_square_neighbours_are_not_swapped():
    # (14, 3) and (15, 3) are neighbours on a 16x12 sensor; with x and y swapped they would not exist
    events = make_events([14, 15, 14], [3, 3, 11], [0, 10, 20], [0, 1, 1])
    kept = ba(events, 1_000, 4)
    np.testing.assert_array_equal(kept, events[1:2])


def test_filter_time_boundary_is_strict():
    events = make_events([3, 4, 5], [3, 3, 3], [0, 1_000, 1_999], [1, 1, 1])
    # 4 fired 1000 after 3 (not < 1000): dropped; 5 fired 999 after 4: kept
    np.testing.assert_array_equal(ba(events, 1_000, 4), events[2:])


@pytest.mark.parametrize("neighbourhood", [4, 8])
@pytest.mark.parametrize("chunk_size", [1, 17, 500])
def test_chunks_with_shared_state_equal_the_whole(neighbourhood, chunk_size):
    events = random_events(3)
    whole = ba(events, 20_000, neighbourhood)
    state = new_filter_state((W, H))
    parts = [filter_background_activity(events[i : i + chunk_size], state, 20_000, neighbourhood) for i in range(0, len(events), chunk_size)]
    np.testing.assert_array_equal(np.concatenate(parts), whole)


def test_a_pixel_never_supports_itself():
    n = 1000
    events = make_events(np.full(n, 7), np.full(n, 4), np.arange(n), np.ones(n))
    for neighbourhood in (4, 8):
        assert len(ba(events, 10**6, neighbourhood)) == 0
    # a neighbour firing once supports the next event of pixel (7, 4) only within filter_time
    with_neighbour = np.concatenate([make_events([8], [4], [0], [1]), events[1:]])
    kept = ba(with_neighbour, 100, 4)
    np.testing.assert_array_equal(kept["t"], np.arange(1, 100))


@pytest.mark.parametrize("neighbourhood", [4, 8])
def test_raising_filter_time_keeps_a_superset(neighbourhood):
    events = random_events(4, unique_t=True)
    previous = None
    for filter_time in (500, 2_000, 10_000, 40_000, 200_000):
        kept = set(ba(events, filter_time, neighbourhood)["t"].tolist())
        if previous is not None:
            assert previous <= kept
            assert len(kept) >= len(previous)
        previous = kept
    assert len(previous) > 0


def test_events_outside_the_state_raise():
    events = make_events([W], [0], [0], [1])
    with pytest.raises(ValueError):
        ba(events, 1_000, 8)
    with pytest.raises(ValueError):
        ba(make_events([0], [H], [0], [1]), 1_000, 8)
    with pytest.raises(ValueError):
        ba(random_events(5, n=10), 1_000, 6)


def test_removes_uniform_noise_keeps_a_moving_edge():
    rng = np.random.default_rng(6)
    width = height = 128
    # sparse uniform noise: 5000 events over 1 s on 16k pixels
    n = 5000
    noise = make_events(rng.integers(0, width, n), rng.integers(0, height, n), np.sort(rng.integers(0, 10**6, n)), rng.integers(0, 2, n))
    denoise = DenoiseBackgroundActivity((width, height), filter_time=10_000)
    assert len(denoise(noise)) < 0.1 * n
    # a vertical edge sweeping right at one column per ms: every pixel of the column fires
    columns = np.repeat(np.arange(width), height)
    rows = np.tile(np.arange(height), width)
    times = columns * 1_000 + rng.integers(0, 500, len(columns))
    order = np.argsort(times, kind="stable")
    edge = make_events(columns[order], rows[order], times[order], np.ones(len(order)))
    assert len(denoise(edge)) > 0.9 * len(edge)
    # a fresh state on every call: the same answer twice
    np.testing.assert_array_equal(denoise(edge), denoise(edge))


def test_hot_pixels_found_and_dropped():
    width, height = 40, 24  # hot pixel (35, 5) would be out of range with x and y swapped
    rng = np.random.default_rng(7)
    n = width * height * 10
    x, y = rng.integers(0, width, n), rng.integers(0, height, n)
    hot = [(35, 5), (0, 23), (17, 9)]
    hx = np.concatenate([np.full(500, hx_) for hx_, _ in hot])
    hy = np.concatenate([np.full(500, hy_) for _, hy_ in hot])
    xs, ys = np.concatenate([x, hx]), np.concatenate([y, hy])
    order = rng.permutation(len(xs))
    events = make_events(xs[order], ys[order], np.arange(len(xs)), rng.integers(0, 2, len(xs)))

    found = find_hot_pixels(events, (width, height), factor=20.0)
    assert found.shape == (3, 2)
    assert {tuple(map(int, row)) for row in found} == set(hot)
    assert len(find_hot_pixels(events[~np.isin(events["x"] * 100 + events["y"], [a * 100 + b for a, b in hot])], (width, height))) == 0

    dropped = DropPixels((width, height), tuple(hot))(events)
    mask = np.ones(len(events), dtype=bool)
    for i, e in enumerate(events):
        if (int(e["x"]), int(e["y"])) in hot:
            mask[i] = False
    np.testing.assert_array_equal(dropped, events[mask])
    assert len(events) - len(dropped) >= 1500


def test_find_hot_pixels_on_no_events():
    empty = make_events([], [], np.zeros(0, dtype=np.int64), [])
    assert find_hot_pixels(empty, (W, H)).shape == (0, 2)
