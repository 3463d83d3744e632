"""Event-domain augmentation: each transform against a plain reference over the same sampled parameters, event
counts, determinism per seed, the input left alone, empty input, order by time; recipes from specs."""
import math

import numpy as np
import pytest

from masnn.datasets.events import EVENT_DTYPE, empty_events, make_events
from masnn.datasets.transforms.augment import (
    BackgroundNoise,
    Compose,
    DropArea,
    DropEvents,
    DropTimeSlice,
    HotPixels,
    OneOf,
    PolarityBalance,
    PolarityMix,
    RandomApply,
    TimeStretch,
    reverse_time,
)
from masnn.datasets.transforms.augment_recipe import IDENTITY, RECOMMENDED, build_augmentation, parse_augment
from masnn.datasets.transforms.augment_spatial import (
    AffineChain,
    AffineParams,
    RandomRotation,
    RandomScale,
    RandomShear,
    RandomShift,
    affine_events,
)

SENSOR = (128, 96)  # not square: width and height must not be mixed up
N = 20_000
SPAN_US = 1_000_000


@pytest.fixture(scope="module")
def events():
    rng = np.random.default_rng(42)
    t = np.sort(rng.integers(0, SPAN_US + 1, N))
    t[100:110] = t[100]  # equal timestamps: merges must keep their order
    return make_events(rng.integers(0, SENSOR[0], N), rng.integers(0, SENSOR[1], N), t, rng.integers(0, 2, N))


def rng(seed):
    return np.random.default_rng(seed)


TRANSFORMS = {
    "scale": RandomScale(SENSOR, (0.7, 1.3)),
    "scale-centres": RandomScale(SENSOR, (0.7, 1.3), subpixel=False),
    "rotate": RandomRotation(SENSOR, 15.0),
    "shear": RandomShear(SENSOR, 0.2),
    "shift": RandomShift(SENSOR, 0.2),
    "chain": AffineChain(SENSOR, ((RandomScale(SENSOR, (0.8, 1.25)), 1.0), (RandomRotation(SENSOR, 10.0), 0.5),
                                  (RandomShift(SENSOR, 0.1), 1.0))),
    "stretch": TimeStretch((0.8, 1.25)),
    "drop": DropEvents((0.1, 0.5)),
    "drop-time": DropTimeSlice((0.1, 0.5)),
    "drop-area": DropArea(SENSOR, (0.1, 0.5)),
    "polarity": PolarityBalance((0.1, 0.5)),
    "mix": PolarityMix((0.1, 0.5)),
    "noise": BackgroundNoise(SENSOR, (0.1, 2.0)),
    "hot": HotPixels(SENSOR, (1, 3)),
    "random-apply": RandomApply(DropEvents((0.2, 0.2)), 0.5),
    "one-of": OneOf((DropEvents(), DropTimeSlice(), DropArea(SENSOR))),
    "recipe": build_augmentation(RECOMMENDED, SENSOR),
}


# ------------------------------------------------------------------------------------------------ common contract


@pytest.mark.parametrize("name", TRANSFORMS)
def test_contract(events, name):
    transform = TRANSFORMS[name]
    before = events.copy()
    out = transform(events, rng(1))
    assert np.array_equal(events, before)  # the input is never changed
    assert out is not events and out.dtype == EVENT_DTYPE and out.ndim == 1
    assert np.all(np.diff(out["t"]) >= 0)  # sorted by time
    assert out["x"].min() >= 0 and out["x"].max() < SENSOR[0] and out["y"].min() >= 0 and out["y"].max() < SENSOR[1]
    assert np.array_equal(out, transform(events, rng(1)))  # determinism per seed
    assert any(not np.array_equal(out, transform(events, rng(seed))) for seed in (2, 3, 4))  # other seeds differ
    empty = transform(empty_events(), rng(1))
    assert empty.dtype == EVENT_DTYPE and empty.shape == (0,)


@pytest.mark.parametrize("transform", [RandomScale(SENSOR, (1.0, 1.0)), RandomRotation(SENSOR, 0.0), RandomShear(SENSOR, 0.0),
                                       RandomShift(SENSOR, 0.0), TimeStretch((1.0, 1.0)), DropEvents((0.0, 0.0)),
                                       DropTimeSlice((0.0, 0.0)), DropArea(SENSOR, (0.0, 0.0)), PolarityBalance((0.0, 0.0)),
                                       BackgroundNoise(SENSOR, (0.0, 0.0)), HotPixels(SENSOR, (0, 0)), Compose(),
                                       build_augmentation(IDENTITY, SENSOR)], ids=repr)
def test_zero_strength_is_the_identity(events, transform):
    np.testing.assert_array_equal(transform(events, rng(5)), events)


# ------------------------------------------------------------------------------------------------ geometry


def _affine_reference(events, matrix, offset, subpixel):
    """The map written out per event: the event's point in its pixel, about the sensor's centre."""
    (a, b), (c, d) = matrix
    cx, cy = SENSOR[0] / 2, SENSOR[1] / 2
    kept = []
    for i, e in enumerate(events):
        ux, uy = (0.5, 0.5) if subpixel is None else (float(subpixel[i, 0]), float(subpixel[i, 1]))
        qx, qy = float(e["x"]) + ux - cx, float(e["y"]) + uy - cy
        x = math.floor(a * qx + b * qy + cx + offset[0])
        y = math.floor(c * qx + d * qy + cy + offset[1])
        if 0 <= x < SENSOR[0] and 0 <= y < SENSOR[1]:
            kept.append((x, y, int(e["t"]), int(e["p"])))
    return make_events(*zip(*kept)) if kept else empty_events()


def test_scale_against_reference(events):
    transform = RandomScale(SENSOR, (0.7, 1.3))
    params = transform.sample(rng(7), events)
    s = params.matrix[0, 0]
    assert 0.7 <= s <= 1.3 and np.array_equal(params.matrix, [[s, 0], [0, s]]) and params.offset == (0, 0)
    assert params.subpixel.shape == (N, 2) and 0 <= params.subpixel.min() and params.subpixel.max() < 1
    expected = _affine_reference(events, [[s, 0.0], [0.0, s]], (0.0, 0.0), params.subpixel)
    np.testing.assert_array_equal(transform(events, rng(7)), expected)
    # zooming in by s keeps the events that were within 1 / s of the centre: about 1 / s^2 of uniform ones
    big = RandomScale(SENSOR, (1.6, 1.6))(events, rng(7))
    assert abs(len(big) / N - 1 / 1.6**2) < 0.02


def test_rotation_against_reference(events):
    transform = RandomRotation(SENSOR, 15.0)
    params = transform.sample(rng(8), events)
    angle = math.atan2(params.matrix[1, 0], params.matrix[0, 0])
    assert 0 < abs(math.degrees(angle)) <= 15
    cos, sin = math.cos(angle), math.sin(angle)
    np.testing.assert_allclose(params.matrix, [[cos, -sin], [sin, cos]])
    expected = _affine_reference(events, params.matrix, (0.0, 0.0), params.subpixel)
    np.testing.assert_array_equal(transform(events, rng(8)), expected)


def test_rotation_turns_clockwise_on_screen():
    """y points down: a positive angle takes a point right of the centre downwards."""
    right = make_events([100], [48], [0], [1])
    quarter = AffineParams(np.array([[0.0, -1.0], [1.0, 0.0]]), (0.0, 0.0), None)  # [[cos, -sin], [sin, cos]] at +90
    out = affine_events(right, quarter, SENSOR)
    assert (int(out["x"][0]), int(out["y"][0])) == (63, 84)  # (36.5, 0.5) about the centre (64, 48) -> (-0.5, 36.5)


def test_shear_and_shift_against_reference(events):
    shear = RandomShear(SENSOR, 0.2)
    params = shear.sample(rng(9), events)
    kx, ky = params.matrix[0, 1], params.matrix[1, 0]
    assert params.matrix[0, 0] == params.matrix[1, 1] == 1 and max(abs(kx), abs(ky)) <= 0.2
    np.testing.assert_array_equal(shear(events, rng(9)), _affine_reference(events, [[1, kx], [ky, 1]], (0, 0), params.subpixel))
    shift = RandomShift(SENSOR, 0.2)
    dx, dy = shift.sample(rng(10), events).offset
    assert dx == int(dx) and dy == int(dy) and abs(dx) <= 0.2 * SENSOR[0] and abs(dy) <= 0.2 * SENSOR[1]
    inside = (events["x"] + dx >= 0) & (events["x"] + dx < SENSOR[0]) & (events["y"] + dy >= 0) & (events["y"] + dy < SENSOR[1])
    expected = events[inside].copy()
    expected["x"] += int(dx)
    expected["y"] += int(dy)
    np.testing.assert_array_equal(shift(events, rng(10)), expected)


def test_affine_chain_composes_the_steps_drawn_in_order(events):
    scale, rotate, shift = RandomScale(SENSOR, (0.8, 1.25)), RandomRotation(SENSOR, 10.0), RandomShift(SENSOR, 0.1)
    chain = AffineChain(SENSOR, ((scale, 1.0), (rotate, 0.5), (shift, 1.0)))
    for seed in range(4):
        g = rng(seed)
        m1 = scale.sample(g, events[:0])
        applied = g.random() < 0.5
        m2 = rotate.sample(g, events[:0]) if applied else None
        m3 = shift.sample(g, events[:0])
        subpixel = g.random((N, 2), dtype=np.float32)
        matrix = m1.matrix if m2 is None else m2.matrix @ m1.matrix
        params = chain.sample(rng(seed), events)
        np.testing.assert_allclose(params.matrix, matrix)
        np.testing.assert_allclose(params.offset, m3.offset)
        np.testing.assert_array_equal(params.subpixel, subpixel)
        np.testing.assert_array_equal(chain(events, rng(seed)), _affine_reference(events, params.matrix, params.offset, subpixel))


# ------------------------------------------------------------------------------------------------ time


def test_time_stretch_against_reference(events):
    transform = TimeStretch((0.8, 1.25))
    factor = transform.sample(rng(11), events)
    assert 0.8 <= factor <= 1.25 and transform.time_reach == 1.25
    expected = events.copy()
    expected["t"] = [math.floor(int(t) * factor) for t in events["t"]]
    out = transform(events, rng(11))
    np.testing.assert_array_equal(out, expected)
    assert abs(int(out["t"][-1]) - factor * SPAN_US) <= factor * 1000  # the span scales with the factor


# ------------------------------------------------------------------------------------------------ drops


def test_drop_events_against_reference_and_count(events):
    transform = DropEvents((0.1, 0.5))
    r, u = transform.sample(rng(12), events)
    assert 0.1 <= r <= 0.5
    expected = make_events(*zip(*[(e["x"], e["y"], e["t"], e["p"]) for e, draw in zip(events, u) if draw >= r]))
    np.testing.assert_array_equal(transform(events, rng(12)), expected)
    kept = len(DropEvents((0.3, 0.3))(events, rng(12)))
    assert abs((N - kept) / N - 0.3) < 5 * math.sqrt(0.3 * 0.7 / N)  # removes about the given fraction


def test_drop_time_slice_against_reference_and_count(events):
    transform = DropTimeSlice((0.1, 0.5))
    t0, t1 = transform.sample(rng(13), events)
    first, last = int(events["t"][0]), int(events["t"][-1])
    assert first <= t0 <= t1 <= last and 0.1 * (last - first) - 1 <= t1 - t0 <= 0.5 * (last - first)
    expected = np.array([e for e in events if not t0 <= e["t"] < t1], dtype=EVENT_DTYPE)
    np.testing.assert_array_equal(transform(events, rng(13)), expected)
    kept = len(DropTimeSlice((0.25, 0.25))(events, rng(13)))
    assert abs((N - kept) / N - 0.25) < 0.02  # uniform times: a quarter of the span holds a quarter of them


def test_drop_area_against_reference_and_count(events):
    transform = DropArea(SENSOR, (0.1, 0.5))
    x0, y0, w, h = transform.sample(rng(14), events)
    assert 0 <= x0 <= SENSOR[0] - w and 0 <= y0 <= SENSOR[1] - h and 0.1 * SENSOR[0] - 1 <= w <= 0.5 * SENSOR[0] + 1
    expected = np.array([e for e in events if not (x0 <= e["x"] < x0 + w and y0 <= e["y"] < y0 + h)], dtype=EVENT_DTYPE)
    np.testing.assert_array_equal(transform(events, rng(14)), expected)
    kept = len(DropArea(SENSOR, (0.5, 0.5))(events, rng(14)))
    assert abs((N - kept) / N - 0.25) < 0.02  # half of each side: a quarter of the area


def test_polarity_balance_against_reference(events):
    transform = PolarityBalance((0.1, 0.5))
    polarity, r, u = transform.sample(rng(15), events)
    expected = np.array([e for e, draw in zip(events, u) if not (draw < r and e["p"] == polarity)], dtype=EVENT_DTYPE)
    out = transform(events, rng(15))
    np.testing.assert_array_equal(out, expected)
    other = 1 - polarity
    assert np.sum(out["p"] == other) == np.sum(events["p"] == other)  # the other polarity is untouched
    thinned = np.sum(out["p"] == polarity) / np.sum(events["p"] == polarity)
    assert abs(thinned - (1 - r)) < 0.03


def test_polarity_mix_against_reference(events):
    transform = PolarityMix((0.1, 0.5))
    r, u = transform.sample(rng(16), events)
    expected = events.copy()
    for i, draw in enumerate(u):
        if draw < r:
            expected[i]["p"] = 0 if events[i]["p"] else 1
    out = transform(events, rng(16))
    np.testing.assert_array_equal(out, expected)
    for field in ("t", "x", "y"):  # only polarities change, and none of the events go
        np.testing.assert_array_equal(out[field], events[field])
    assert abs(np.mean(out["p"] != events["p"]) - r) < 0.02


# ------------------------------------------------------------------------------------------------ added events


def _merged_reference(events, extra):
    """A stable sort by time of the events followed by the added ones: at equal times the events come first."""
    rows = [tuple(e) for e in events] + [tuple(e) for e in extra]
    rows.sort(key=lambda row: row[EVENT_DTYPE.names.index("t")])
    return np.array(rows, dtype=EVENT_DTYPE)


def test_background_noise_against_reference_and_count(events):
    transform = BackgroundNoise(SENSOR, (0.1, 2.0))
    extra = transform.sample(rng(16), events)
    np.testing.assert_array_equal(transform(events, rng(16)), _merged_reference(events, extra))
    span = (int(events["t"][0]), int(events["t"][-1]))
    assert extra["t"].min() >= span[0] and extra["t"].max() <= span[1] and np.all(np.diff(extra["t"]) >= 0)
    expected = 0.5 * SENSOR[0] * SENSOR[1] * (span[1] - span[0]) * 1e-6  # rate * pixels * duration
    added = len(BackgroundNoise(SENSOR, (0.5, 0.5))(events, rng(16))) - N
    assert abs(added - expected) < 5 * math.sqrt(expected)
    assert abs(np.mean(extra["p"]) - 0.5) < 0.05


def test_hot_pixels_against_reference_and_count(events):
    transform = HotPixels(SENSOR, (2, 2), (50.0, 50.0))
    extra = transform.sample(rng(17), events)
    np.testing.assert_array_equal(transform(events, rng(17)), _merged_reference(events, extra))
    pixels, counts = np.unique(extra["y"].astype(int) * SENSOR[0] + extra["x"], return_counts=True)
    assert len(pixels) <= 2 and abs(counts.sum() - 2 * 50.0) < 5 * math.sqrt(100)  # 50 Hz for 1 s each
    hot = extra[extra["x"] == extra["x"][0]]
    assert hot["t"].max() - hot["t"].min() > SPAN_US / 2  # each pixel fires over the whole span


# ------------------------------------------------------------------------------------------------ combinations


def test_random_apply_one_of_and_compose_against_their_parts(events):
    drop = DropEvents((0.2, 0.2))
    never, always = RandomApply(drop, 0.0)(events, rng(18)), RandomApply(drop, 1.0)(events, rng(18))
    np.testing.assert_array_equal(never, events)
    g = rng(18)
    g.random()  # RandomApply's own draw comes first
    np.testing.assert_array_equal(always, drop(events, g))
    one_of = OneOf((DropEvents(), DropTimeSlice(), DropArea(SENSOR)))
    g = rng(19)
    chosen = one_of.transforms[one_of.sample(g, events)]
    np.testing.assert_array_equal(one_of(events, rng(19)), chosen(events, g))
    steps = (TimeStretch(), DropEvents(), BackgroundNoise(SENSOR))
    g, expected = rng(20), events
    for step in steps:
        expected = step(expected, g)
    np.testing.assert_array_equal(Compose(steps)(events, rng(20)), expected)
    assert Compose((TimeStretch((0.8, 1.0)), RandomApply(TimeStretch((0.5, 1.0)), 0.1))).time_reach == pytest.approx(2.5)


# ------------------------------------------------------------------------------------------------ recipes


def test_spec_parsing():
    recipe = parse_augment("noise=0.5, drop=0.3@1,scale=1.25,rotate=15")
    assert [name for name, _, _ in recipe.items] == ["scale", "rotate", "drop", "noise"]  # in running order
    assert dict((n, (b, p)) for n, b, p in recipe.items) == {
        "scale": ((0.8, 1.25), 1.0), "rotate": ((-15.0, 15.0), 1.0), "drop": ((0.0, 0.3), 1.0), "noise": ((0.0, 0.5), 1.0)}
    assert str(parse_augment(str(recipe))) == str(recipe)
    assert not parse_augment("") and parse_augment(IDENTITY) and parse_augment(RECOMMENDED)
    built = parse_augment(RECOMMENDED).build(SENSOR)
    assert isinstance(built.transforms[0], AffineChain) and len(built.transforms[0].steps) == 4
    assert built.time_reach == pytest.approx(1.25)
    for bad, message in [("flip=1", "unknown augmentation 'flip'"), ("rotate=1-5", "takes one number"),
                         ("drop=1.5", "0 <= low <= high <= 1"), ("noise=2-1", "low <= high"), ("scale=0", "positive"),
                         ("noise=1@2", "probability"), ("noise", "cannot read"), ("noise=x", "cannot read"),
                         ("noise=1,noise=2", "twice"), ("identity,noise=1", "unknown augmentation")]:
        with pytest.raises(ValueError, match=message):
            parse_augment(bad)


def test_invert_turns_every_polarity_in_the_share_of_crops_it_names(events):
    invert = parse_augment("invert=0.3").build(SENSOR)
    inverted = 0
    for seed in range(200):
        out = invert(events, rng(seed))
        for field in ("t", "x", "y"):
            np.testing.assert_array_equal(out[field], events[field])
        if np.array_equal(out["p"], 1 - events["p"]):
            inverted += 1
        else:
            np.testing.assert_array_equal(out["p"], events["p"])  # all or nothing
    assert 40 <= inverted <= 80  # 60 expected; binomial sd 6.5
    with pytest.raises(ValueError, match="probability"):
        parse_augment("invert=1.5")


def test_reverse_time_against_a_plain_loop(events):
    span = SPAN_US // 2
    out = reverse_time(events, span)
    expected = [(span - 1 - int(e["t"]), int(e["x"]), int(e["y"]), 1 - int(e["p"])) for e in events[::-1] if 0 <= e["t"] < span]
    assert out.dtype == EVENT_DTYPE and len(out) == len(expected) > 0
    assert [(int(e["t"]), int(e["x"]), int(e["y"]), int(e["p"])) for e in out] == expected
    assert np.all(np.diff(out["t"]) >= 0)
    np.testing.assert_array_equal(reverse_time(out, span), events[events["t"] < span])  # twice is the identity
    assert len(reverse_time(events[:0], span)) == 0
