"""masnn.datasets.synth.emulator: the DVS pixel model against hand computations and statistical expectations."""
from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pytest

from masnn.datasets.events import EVENT_DTYPE
from masnn.datasets.synth.emulator import DvsEmulator, PixelParams

NO_NOISE = dict(background_rate_hz=0.0, hot_pixel_fraction=0.0, shot_noise_rate_hz=0.0)
# an ideal pixel: no noise, no mismatch, no refractory period, no low-pass
IDEAL = dict(NO_NOISE, threshold_mismatch=0.0, refractory_us=0, cutoff_hz=math.inf)


def texture(shape, seed=0, low=0.2, high=1.0):
    return np.random.default_rng(seed).uniform(low, high, shape).astype(np.float32)


def run_frames(frames, dt=1000, params=PixelParams(), rng=0, t0=0):
    """Events of frames[1:] fed at t0 + k * dt, the emulator started on frames[0] at t0."""
    emulator = DvsEmulator(frames[0], t0, params, rng)
    return emulator.run((t0 + k * dt, frame) for k, frame in enumerate(frames[1:], start=1)), emulator


def per_pixel_counts(events, shape, polarity=None):
    if polarity is not None:
        events = events[events["p"] == polarity]
    counts = np.zeros(shape, dtype=np.int64)
    np.add.at(counts, (events["y"], events["x"]), 1)
    return counts


def bar_frames(n_steps, shape=(32, 64), width=8, rows=(10, 22), start=10, steps_per_pixel=4, direction=1,
               background=0.2, bright=1.0):
    """A bright bar on a dark background, moving one pixel every ``steps_per_pixel`` frames."""
    frames, lefts = [], []
    for k in range(n_steps + 1):
        left = start + direction * (k // steps_per_pixel)
        frame = np.full(shape, background, dtype=np.float32)
        frame[rows[0] : rows[1], left : left + width] = bright
        frames.append(frame)
        lefts.append(left)
    return frames, np.array(lefts)


# --- noise ---------------------------------------------------------------------------------------------

def test_static_scene_gives_background_noise_at_its_rate():
    shape, rate, seconds = (64, 64), 5.0, 1.0
    frame = texture(shape)
    params = PixelParams(background_rate_hz=rate, hot_pixel_fraction=0.0, shot_noise_rate_hz=0.0, background_on_fraction=0.7)
    events, _ = run_frames([frame] * 1001, params=params)
    expected = rate * frame.size * seconds
    assert abs(len(events) - expected) < 4 * math.sqrt(expected)
    on = events["p"].mean()
    assert abs(on - 0.7) < 4 * math.sqrt(0.7 * 0.3 / len(events))
    # spread over the array, not a few pixels: per-pixel counts look Poisson (variance ~ mean)
    counts = per_pixel_counts(events, shape)
    assert 0.8 < counts.var() / counts.mean() < 1.2


def test_spread_background_keeps_its_mean_rate_on_fewer_pixels():
    # per-pixel rates rate * exp(sigma Z - sigma^2 / 2): the same mean, counts over-dispersed as a
    # Poisson-lognormal mixture, Var = mu + mu^2 (exp(sigma^2) - 1)
    shape, rate, sigma = (64, 64), 5.0, 1.0
    frame = texture(shape)
    params = PixelParams(background_rate_hz=rate, background_spread=sigma, hot_pixel_fraction=0.0,
                         shot_noise_rate_hz=0.0, refractory_us=0)
    events, _ = run_frames([frame] * 1001, params=params)
    expected = rate * frame.size
    assert abs(len(events) - expected) < 4 * math.sqrt(expected)
    counts = per_pixel_counts(events, shape)
    mixture_variance = rate + rate**2 * (math.exp(sigma**2) - 1)
    assert 0.7 < counts.var() / mixture_variance < 1.3
    even, _ = run_frames([frame] * 1001, params=replace(params, background_spread=0.0))
    assert np.count_nonzero(counts) < 0.9 * np.count_nonzero(per_pixel_counts(even, shape))


def test_static_scene_without_noise_is_silent():
    params = PixelParams(**NO_NOISE)  # mismatch, low-pass and refractory at their defaults
    frame = texture((32, 48))
    events, _ = run_frames([frame] * 300, params=params)
    assert len(events) == 0


def test_background_rate_raises_noise_count():
    frame = texture((32, 32))
    counts = []
    for rate in (1.0, 10.0):
        events, _ = run_frames([frame] * 501, params=PixelParams(background_rate_hz=rate, hot_pixel_fraction=0.0, shot_noise_rate_hz=0.0))
        counts.append(len(events))
    assert counts[1] > 5 * counts[0] > 0


def test_hot_pixels_fire_at_their_rate():
    shape, rate = (32, 32), 200.0
    params = PixelParams(background_rate_hz=0.0, shot_noise_rate_hz=0.0, hot_pixel_fraction=0.01, hot_pixel_rate_hz=rate, refractory_us=0)
    events, emulator = run_frames([texture(shape)] * 1001, params=params)
    hot = emulator.hot_pixels
    assert len(hot) == round(0.01 * 32 * 32)
    counts = per_pixel_counts(events, shape)
    assert counts.sum() == counts[hot[:, 1], hot[:, 0]].sum()  # nothing outside the hot pixels
    expected = rate * len(hot) * 1.0
    assert abs(len(events) - expected) < 4 * math.sqrt(expected)
    assert (counts[hot[:, 1], hot[:, 0]] > rate / 2).all()  # every one of them hot


def test_shot_noise_is_stronger_in_the_dark():
    shape, rate = (32, 64), 20.0
    frame = np.zeros(shape, np.float32)
    frame[:, 32:] = 2.0
    params = PixelParams(background_rate_hz=0.0, hot_pixel_fraction=0.0, shot_noise_rate_hz=rate, refractory_us=0)
    events, _ = run_frames([frame] * 1001, params=params)
    dark = np.count_nonzero(events["x"] < 32)
    bright = len(events) - dark
    for count, expected in ((dark, rate * 32 * 32), (bright, rate / 4 * 32 * 32)):
        assert abs(count - expected) < 4 * math.sqrt(expected)


# --- thresholds and timing -------------------------------------------------------------------------------

@pytest.mark.parametrize("k", [1, 2, 5])
@pytest.mark.parametrize("sign", [1, -1])
def test_log_step_of_k_thresholds_gives_k_events(k, sign):
    theta_on, theta_off, eps = 0.15, 0.25, 0.01
    params = PixelParams(**IDEAL, threshold_on=theta_on, threshold_off=theta_off, log_eps=eps)
    before = texture((8, 12), low=0.5, high=1.5)
    theta = theta_on if sign > 0 else theta_off
    after = ((before + eps) * np.exp(sign * k * theta) - eps).astype(np.float32)
    emulator = DvsEmulator(before, 5_000, params)
    events = emulator.step(after, 6_000)
    assert (per_pixel_counts(events, before.shape) == k).all()
    assert (events["p"] == (1 if sign > 0 else 0)).all()
    assert (events["t"] > 5_000).all() and (events["t"] <= 6_000).all()
    # the reference moved by k thresholds: holding the frame makes nothing more
    assert len(emulator.step(after, 7_000)) == 0


def test_ramp_gives_evenly_spaced_interpolated_timestamps():
    # ln(I + eps) rises by theta every 370 us; frames every 1000 us. By hand: crossing k at t = 370 k.
    theta, eps, period = 0.2, 0.01, 370
    params = PixelParams(**IDEAL, threshold_on=theta, log_eps=eps)
    base = np.full((2, 3), 0.3, np.float32)
    frames = [((base + eps) * np.exp(theta * t / period) - eps).astype(np.float32) for t in range(0, 5001, 1000)]
    events, _ = run_frames(frames, dt=1000, params=params)
    n = int(5000 // period)  # 13 crossings by t = 5000
    for y in range(2):
        for x in range(3):
            mine = events[(events["x"] == x) & (events["y"] == y)]
            np.testing.assert_array_equal(mine["t"], period * np.arange(1, n + 1))
            assert (mine["p"] == 1).all()


def test_raising_thresholds_lowers_moving_edge_count():
    frames, _ = bar_frames(60, steps_per_pixel=1)
    counts = [len(run_frames(frames, params=PixelParams(**NO_NOISE, threshold_on=t, threshold_off=t))[0])
              for t in (0.15, 0.3, 0.6)]
    assert counts[0] > counts[1] > counts[2] > 0
    assert counts[2] < 0.6 * counts[0]


def test_threshold_mismatch_is_drawn_per_pixel():
    emulator = DvsEmulator(texture((64, 64)), 0, PixelParams(threshold_on=0.2, threshold_mismatch=0.03))
    assert abs(emulator.theta_on.std() - 0.03) < 0.003
    assert abs(emulator.theta_on.mean() - 0.2) < 0.003
    assert emulator.theta_on.shape == (64, 64)
    exact = DvsEmulator(texture((8, 8)), 0, PixelParams(threshold_off=0.3, threshold_mismatch=0.0))
    assert (exact.theta_off == 0.3).all()


def test_spread_references_fire_the_share_of_pixels_within_reach_of_a_threshold():
    # each reference starts uniformly between -theta_off and +theta_on of its level, so a rise of delta fires
    # the pixels that sat within delta of their ON threshold: delta / (theta_on + theta_off) of them
    theta_on, theta_off, delta, eps = 0.2, 0.3, 0.05, 0.01
    params = PixelParams(**IDEAL, threshold_on=theta_on, threshold_off=theta_off, log_eps=eps, reference_spread=1.0)
    before = np.full((64, 64), 0.5, np.float32)
    after = ((before + eps) * np.exp(delta) - eps).astype(np.float32)
    assert len(run_frames([before, before, before], params=params)[0]) == 0  # no change, no event
    events, _ = run_frames([before, after], params=params, rng=4)
    share = delta / (theta_on + theta_off)
    assert (events["p"] == 1).all()
    assert abs(len(events) - share * before.size) < 4 * math.sqrt(share * (1 - share) * before.size)
    assert len(np.unique(events["y"].astype(np.int64) * 64 + events["x"])) == len(events)  # one each
    # all on rest: the same rise fires nobody
    assert len(run_frames([before, after], params=replace(params, reference_spread=0.0))[0]) == 0


@pytest.mark.parametrize("sigma", [0.0, 0.5])
def test_bandwidth_mismatch_spreads_the_latency_of_a_step_log_normally(sigma):
    # after a step of D (log units) held from t = 0, a pixel's low-pass level is D (1 - exp(-2 pi f t)): its first
    # event comes at t = -ln(1 - theta / D) / (2 pi f), so ln(latency) = const - ln(bandwidth factor)
    params = PixelParams(**NO_NOISE, threshold_on=0.2, threshold_mismatch=0.0, refractory_us=0, cutoff_hz=100.0,
                         cutoff_floor_hz=1e-3, log_eps=1e-6, cutoff_mismatch=sigma)
    dark = np.ones((32, 32), np.float32)
    events, _ = run_frames([dark] + [dark * np.float32(math.e)] * 600, dt=5, params=params)
    pixel = events["y"].astype(np.int64) * 32 + events["x"]
    first = np.full(dark.size, np.iinfo(np.int64).max)
    np.minimum.at(first, pixel, events["t"])
    assert (first < 3000).all()  # every pixel fired
    expected = -math.log(1 - 0.2) / (2 * math.pi * 100.0 * math.e) * 1e6  # microseconds, factor 1
    if sigma == 0:
        assert np.abs(first - expected).max() <= 3  # frame interpolation and rounding
    else:
        assert abs(np.log(first).std() - sigma) < 0.05
        assert abs(np.median(np.log(first)) - math.log(expected)) < 0.1


def test_readout_repeats_copy_a_share_of_events_a_few_microseconds_later():
    frames, _ = bar_frames(80)
    base, _ = run_frames(frames, params=PixelParams(**NO_NOISE), rng=5)
    repeated, _ = run_frames(frames, params=PixelParams(**NO_NOISE, repeat_fraction=0.25), rng=5)
    assert (np.diff(repeated["t"]) >= 0).all()
    extra = len(repeated) - len(base)
    assert abs(extra - 0.25 * len(base)) < 4 * math.sqrt(0.25 * 0.75 * len(base))
    # every original event is there, and every other one copies an original's pixel and polarity 0-4 us later
    rows = lambda e: list(zip(e["x"].tolist(), e["y"].tolist(), e["p"].tolist(), e["t"].tolist()))
    left = list(rows(repeated))
    for row in rows(base):
        left.remove(row)
    originals = set(rows(base))
    for x, y, p, t in left:
        assert any((x, y, p, t - d) in originals for d in range(5))


def one_step_up_and_down(params, rng=3, side=64, theta=0.2):
    """Every pixel of an ideal array crosses one ON threshold (at 1000 us), then one OFF (at 6000 us); the
    frames stay for 6 ms after each, so that anything due after an event is out."""
    eps = params.log_eps
    low = np.full((side, side), 0.5, np.float32)
    high = ((low + eps) * np.exp(theta + 1e-4) - eps).astype(np.float32)
    emulator = DvsEmulator(low, 0, params, rng)
    steps = [(t, high if 1000 <= t < 6000 else low) for t in range(1000, 12001, 1000)]
    per_step = [(t - 1000, t, emulator.step(frame, t)) for t, frame in steps]
    return per_step


def copies_per_pixel(events, polarity, side=64):
    counts = np.zeros(side * side, np.int64)
    chosen = events[events["p"] == polarity]
    for x, y in zip(chosen["x"].tolist(), chosen["y"].tolist()):
        counts[y * side + x] += 1
    return counts


def test_on_only_repeats_copy_on_events_a_geometric_number_of_times():
    params = PixelParams(**IDEAL, threshold_on=0.2, threshold_off=0.2, repeat_fraction=0.3, repeat_on_only=True,
                         repeat_more=0.5)
    per_step = one_step_up_and_down(params)
    events = np.concatenate([e for _, _, e in per_step])
    on, off = copies_per_pixel(events, 1), copies_per_pixel(events, 0)
    assert (off == 1).all()  # OFF events are never repeated
    assert (on >= 1).all()
    repeated = (on >= 2).mean()
    assert abs(repeated - 0.3) < 4 * math.sqrt(0.3 * 0.7 / on.size)
    again = (on >= 3).sum() / (on >= 2).sum()  # a repeat repeated once more
    assert abs(again - 0.5) < 4 * math.sqrt(0.25 / (on >= 2).sum())
    assert ((on >= 4).sum() / (on >= 3).sum()) == pytest.approx(0.5, abs=0.15)
    on_times = events["t"][events["p"] == 1]
    assert on_times.min() >= 1 and on_times.max() <= 1000  # copies 0-4 us after an original, never after the frame


def test_rebounds_follow_a_share_of_on_events_with_an_off_about_half_a_millisecond_later():
    params = PixelParams(**IDEAL, threshold_on=0.2, threshold_off=0.2, rebound_fraction=0.35, rebound_us=490.0)
    per_step = one_step_up_and_down(params)
    for t_prev, t, events in per_step:  # every step reports its own interval, in time order
        assert ((events["t"] > t_prev) & (events["t"] <= t)).all() and (np.diff(events["t"]) >= 0).all()
    events = np.concatenate([e for _, _, e in per_step])
    on, off = copies_per_pixel(events, 1), copies_per_pixel(events, 0)
    assert (on == 1).all()  # ON events are as before
    assert set(off.tolist()) <= {1, 2}  # the step down's OFF, and at most one rebound
    rebounded = off == 2
    assert abs(rebounded.mean() - 0.35) < 4 * math.sqrt(0.35 * 0.65 / on.size)
    # the rebound's delay after its pixel's ON (all the ONs at 1000 us): log-normal about 490 us, sigma 0.45
    early_off = events[(events["p"] == 0) & (events["t"] < 6000)]
    assert len(early_off) == rebounded.sum()
    pixels = early_off["y"].astype(np.int64) * 64 + early_off["x"]
    assert rebounded[pixels].all()
    delay = np.log(early_off["t"] - 1000.0)
    assert abs(np.median(delay) - math.log(490)) < 0.06 and abs(delay.std() - 0.45) < 0.04


def test_a_rebound_starts_its_pixels_refractory_period():
    # a steady brightening crosses an ON threshold every 100 us; the refractory period keeps 300 us between events
    theta, eps, refractory = 0.2, 0.01, 300
    params = PixelParams(**dict(IDEAL, refractory_us=refractory), threshold_on=theta, log_eps=eps, rebound_fraction=1.0)
    start = np.full((1, 1), 0.05, np.float32)
    emulator = DvsEmulator(start, 0, params, 4)
    frames = [(t, ((start + eps) * np.exp(theta * t / 100) - eps).astype(np.float32)) for t in range(100, 8001, 100)]
    events = emulator.run(frames)
    on, off = events["t"][events["p"] == 1], events["t"][events["p"] == 0]
    assert len(off) > 5 and (np.diff(events["t"]) >= 0).all()
    for rebound in off:  # silence for the refractory period after every rebound
        assert not ((on > rebound) & (on < rebound + refractory)).any()
    gaps = np.diff(on)  # so two ON events lie at least a rebound and a refractory period apart (some rebounds fall past the end)
    assert np.median(gaps) > refractory + 300


def test_repeats_and_rebounds_off_leave_every_draw_as_before():
    frames, _ = bar_frames(40)
    base, _ = run_frames(frames, params=PixelParams(), rng=2)
    same, _ = run_frames(frames, params=PixelParams(repeat_on_only=True, rebound_us=300.0), rng=2)
    np.testing.assert_array_equal(base, same)


# --- refractory period ----------------------------------------------------------------------------------

def test_refractory_drops_events_but_moves_the_reference():
    # 3 thresholds in one 1000 us step: crossings at 333, 667, 1000 us; 667 is within 600 us of 333
    theta, eps = 0.2, 0.01
    params = PixelParams(**dict(IDEAL, refractory_us=600), threshold_on=theta, log_eps=eps)
    before = np.full((1, 1), 0.5, np.float32)
    after = ((before + eps) * np.exp(3 * theta) - eps).astype(np.float32)
    emulator = DvsEmulator(before, 0, params)
    np.testing.assert_array_equal(emulator.step(after, 1000)["t"], [333, 1000])
    assert len(emulator.step(after, 2000)) == 0  # the dropped crossing is not made up later


def test_no_two_events_of_a_pixel_within_refractory_period():
    rng = np.random.default_rng(3)
    frames = [np.exp(rng.uniform(-2, 1, (16, 16))).astype(np.float32) for _ in range(40)]
    noisy = dict(background_rate_hz=50.0, hot_pixel_fraction=0.02, hot_pixel_rate_hz=2000.0)

    def min_gap(refractory):
        events, _ = run_frames(frames, params=PixelParams(**noisy, refractory_us=refractory, cutoff_hz=math.inf))
        pixel = events["y"].astype(np.int64) * 16 + events["x"]
        order = np.lexsort((events["t"], pixel))
        same = pixel[order][1:] == pixel[order][:-1]
        return np.diff(events["t"][order])[same].min(), len(events)

    gap_free, n_free = min_gap(0)
    gap, n = min_gap(700)
    assert gap_free < 700  # without the refractory period the scene does make close events
    assert gap >= 700
    assert n < n_free


# --- photoreceptor low-pass -----------------------------------------------------------------------------

def flash_count(level, cutoff_hz):
    """Events from one frame at exp(0.9) x ``level`` between frames at ``level`` (1 ms frames)."""
    params = PixelParams(**NO_NOISE, threshold_mismatch=0.0, refractory_us=0, cutoff_hz=cutoff_hz, log_eps=1e-6)
    dark = np.full((8, 8), level, np.float32)
    frames = [dark] * 5 + [dark * np.float32(math.exp(0.9))] + [dark] * 60
    return len(run_frames(frames, params=params)[0])


def test_brief_flash_makes_fewer_events_in_dim_light():
    # the same contrast makes the same events without the filter ...
    assert flash_count(0.05, math.inf) == flash_count(1.0, math.inf) > 0
    # ... and fewer in dim light with it: the photoreceptor is slower there
    dim, bright = flash_count(0.05, 300.0), flash_count(1.0, 300.0)
    assert dim < 0.5 * bright
    assert bright > 0


def test_flicker_makes_fewer_events_at_low_cutoff():
    dt = 50  # 20 kHz frames, 100 Hz flicker, 0.1 s
    t = np.arange(0, 100_001, dt) * 1e-6
    base = texture((8, 8), low=0.8, high=1.2)
    frames = [base * np.float32(1 + 0.8 * math.sin(2 * math.pi * 100 * s)) for s in t]

    def count(cutoff):
        params = PixelParams(**NO_NOISE, cutoff_hz=cutoff, refractory_us=0)
        return len(run_frames(frames, dt=dt, params=params)[0])

    low, high = count(30.0), count(3000.0)
    assert high > 0
    assert low < 0.3 * high


# --- determinism and format ------------------------------------------------------------------------------

def test_same_seed_same_events_different_seed_different_noise():
    frames, _ = bar_frames(80)
    params = PixelParams(background_rate_hz=20.0, hot_pixel_fraction=0.01)
    a, _ = run_frames(frames, params=params, rng=7)
    b, _ = run_frames(frames, params=params, rng=7)
    c, _ = run_frames(frames, params=params, rng=np.random.default_rng(7))
    d, _ = run_frames(frames, params=params, rng=8)
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(a, c)  # a seed and a Generator made from it are the same
    assert len(a) > 100 and (len(a) != len(d) or not np.array_equal(a, d))


def test_output_sorted_within_frame_and_typed():
    shape = (20, 30)  # non-square: x indexes columns, y rows
    rng = np.random.default_rng(1)
    frames = [np.exp(rng.uniform(-2, 1, shape)).astype(np.float32) for _ in range(30)]
    params = PixelParams(background_rate_hz=100.0, hot_pixel_fraction=0.02)
    emulator = DvsEmulator(frames[0], 1_000, params, rng=2)
    chunks = []
    for k, frame in enumerate(frames[1:], start=1):
        t_prev, t = 1_000 + (k - 1) * 700, 1_000 + k * 700
        events = emulator.step(frame, t)
        assert events.dtype == EVENT_DTYPE
        assert ((events["t"] > t_prev) & (events["t"] <= t)).all()
        chunks.append(events)
    events = np.concatenate(chunks)
    assert len(events) > 1000
    assert (np.diff(events["t"]) >= 0).all()
    assert events["x"].min() >= 0 and events["x"].max() < shape[1]
    assert events["y"].min() >= 0 and events["y"].max() < shape[0]
    assert set(np.unique(events["p"])) == {0, 1}
    # run() is the concatenation of step()
    again, _ = run_frames(frames, dt=700, params=params, rng=2, t0=1_000)
    np.testing.assert_array_equal(again, events)
    assert again.dtype == EVENT_DTYPE


def test_bad_input_is_refused():
    emulator = DvsEmulator(np.ones((4, 5), np.float32), 100)
    with pytest.raises(ValueError):
        emulator.step(np.ones((5, 4), np.float32), 200)
    with pytest.raises(ValueError):
        emulator.step(np.ones((4, 5), np.float32), 100)
    with pytest.raises(ValueError):
        PixelParams(threshold_on=0.0)
    with pytest.raises(ValueError):
        PixelParams(hot_pixel_fraction=1.5)


# --- a moving bar --------------------------------------------------------------------------------------

@pytest.mark.parametrize("direction", [1, -1])
def test_moving_bar_on_at_leading_edge_off_at_trailing(direction):
    width, rows = 8, (10, 22)
    frames, lefts = bar_frames(120, width=width, rows=rows, start=10 if direction > 0 else 46, direction=direction)
    events, _ = run_frames(frames, params=PixelParams(**NO_NOISE))
    on, off = events[events["p"] == 1], events[events["p"] == 0]
    assert len(on) > 100 and len(off) > 100
    assert abs(len(on) - len(off)) < 0.3 * len(events)  # what enters also leaves
    assert ((events["y"] >= rows[0]) & (events["y"] < rows[1])).all()
    # the bar's centre when each event fired: its frame is the first at or after the event
    centre = lefts[np.ceil(events["t"] / 1000).astype(int)] + width / 2
    ahead = (events["x"] - centre) * direction > 0
    assert (ahead[events["p"] == 1]).all()  # ON where the bar moves into the dark
    assert (~ahead[events["p"] == 0]).all()  # OFF where it leaves
