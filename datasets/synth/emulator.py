"""A frame-driven DVS pixel emulator (v2e-like): linear-intensity images in, events (EVENT_DTYPE) out.

Per pixel, at every frame:
- log intensity L = ln(I + log_eps), I clipped at 0; log_eps plays the photodiode's dark current;
- a first-order low-pass (the photoreceptor) whose -3 dB frequency is cutoff_hz * I, never below
  cutoff_floor_hz: a real photoreceptor's bandwidth grows with its photocurrent, so dim scenes blur fast
  motion and flicker. It is integrated exactly for a step held over dt (decay exp(-2 pi f dt)), so any
  frame rate is stable; cutoff_hz = math.inf removes the filter;
- the filtered level is compared with the pixel's reference (its level at its last event). Crossing
  reference + k * theta_on (reference - k * theta_off) makes k ON (OFF) events, and the reference moves
  by k thresholds. Between two frames the filtered level is taken as linear in time, so each crossing gets
  its own timestamp, rounded to the microsecond and kept inside (t_prev, t]: a ramp gives evenly spaced
  events, not bursts at frame times. Thresholds are drawn once per pixel (fixed-pattern mismatch), and so
  is each pixel's bandwidth factor (cutoff_mismatch: a log-normal spread, so neighbours that see the same
  edge fire at different times, as a real array's do);
- at the start each pixel's reference may sit anywhere between its thresholds (reference_spread): a real
  camera has been running before a recording begins, so a faint change fires the share of pixels that
  happened to be near a threshold (scattered single events) rather than all or none of them;
- refractory period: an event closer than refractory_us to the pixel's previous *emitted* event is
  dropped, while the reference still moves as if it had fired (as v2e). The pixel's change is not lost,
  it just makes fewer events, as a real pixel held in reset does;
- noise, independent of the signal: background activity (BA) at background_rate_hz per pixel on average,
  the same on every pixel or log-normally spread over them (background_spread),
  ON with probability background_on_fraction (real BA is mostly leak events, which are ON); optional
  shot noise, strongest in the dark (v2e's rule: the rate falls linearly to a quarter at intensity >= 1),
  either polarity; a fixed random set of hot pixels at hot_pixel_rate_hz, either polarity. Noise events
  are Poisson (drawn ahead in 100 ms batches: a count per source, uniform times), obey the refractory
  period like any event, and do not move the reference (they are spurious resets the readout sees, not
  a change of light);
- readout repeats: a share repeat_fraction of the events is reported twice, 0-4 us apart (same pixel and
  polarity), as a DVS128's readout does for about one event in eight. On a real DVS128 only ON events repeat
  (repeat_on_only), and a repeat is often repeated again (repeat_more: the chance of one more copy, so the
  copies are geometric: 2-7 copies of one ON event in the real clips);
- ON rebounds: a share rebound_fraction of the ON events is followed by an OFF event of the same pixel
  rebound_us later (log-normal, sigma REBOUND_SPREAD), one per ON event however often the readout repeats it,
  outside the refractory period and without moving the reference; the pixel's refractory period then runs from
  the rebound. A real DVS128 pixel does this after about one ON event in three
  (0.2-0.8 ms later, median 0.5 ms): its resets ring. So real pixels alternate ON and OFF while a limb
  brightens them, where a clean pixel fires a run of ONs, and two ON events of a real pixel lie at least a
  rebound and a refractory period apart (0.7-0.9 ms; OFF to ON at least 0.4 ms).

Everything per pixel is vectorised: numpy computes the transcendental functions (its SIMD log/exp are
several times faster than numba's scalar ones), one compiled pass integrates the filter and finds the
pixels that crossed a threshold, a second makes their events, merges the noise, sorts by time (stable:
signal events in raster order, then BA, hot, shot noise) and applies the refractory period.
Deterministic for a given seed and sequence of frame times: the random draws happen in a fixed order
(thresholds, hot pixels, BA spread, bandwidth factors, references at construction; then each noise
batch's counts, pixels, times, polarities, and each step's rebounds and repeats). The bandwidth factors,
references, rebounds and repeats draw nothing when their parameter is 0, so turning one of them off leaves every
other draw as it was.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterable

import numba
import numpy as np

from masnn.datasets.events import EVENT_DTYPE, NEVER_FIRED, concatenate

# A crossing this close (log units) below a threshold still counts: float32 frames carry ~1e-7 log error,
# and a step of exactly k thresholds must give k events, not k - 1.
TOLERANCE = 1e-5
MIN_THRESHOLD_FRACTION = 0.25  # mismatch draws are clipped here (x mean) so no pixel becomes a runaway
SHOT_NOISE_BRIGHT_FACTOR = 0.25  # shot noise at intensity >= 1, relative to its rate in the dark (v2e)
REBOUND_SPREAD = 0.45  # sigma of ln(rebound delay): the real DVS128 Gesture clips' 0.27-0.72 ms (p10-p75) about 0.49 ms


@dataclass(frozen=True)
class PixelParams:
    """DVS pixel parameters; defaults sit in the range DVS128 recordings (e.g. DVS128 Gesture) show."""

    threshold_on: float = 0.2  # mean ON contrast threshold, ln(intensity) units (DVS128 ~0.15-0.3)
    threshold_off: float = 0.2  # mean OFF contrast threshold, ln units (ON:OFF ~1:1 in DVS Gesture)
    threshold_mismatch: float = 0.03  # per-pixel std of both thresholds, ln units, drawn once (fixed pattern)
    refractory_us: int = 100  # microseconds; events closer than this to the pixel's previous one are dropped
    cutoff_hz: float = 300.0  # Hz, photoreceptor -3 dB bandwidth at intensity 1.0, proportional to intensity; math.inf: no filter
    cutoff_floor_hz: float = 10.0  # Hz, the bandwidth never falls below this (dark pixels still settle, in ~16 ms)
    cutoff_mismatch: float = 0.0  # per-pixel std of ln(bandwidth factor), drawn once (fixed pattern)
    reference_spread: float = 0.0  # 0-1: start references this share of the way to a uniform draw between the thresholds
    repeat_fraction: float = 0.0  # share of events the readout reports twice, 0-4 us apart
    repeat_on_only: bool = False  # only ON events repeat (a DVS128's readout)
    repeat_more: float = 0.0  # chance that a repeated event gets one more copy (the copies are geometric)
    rebound_fraction: float = 0.0  # share of ON events followed by an OFF of the same pixel rebound_us later
    rebound_us: float = 490.0  # median delay of the rebound OFF, microseconds
    background_rate_hz: float = 0.1  # BA (leak) noise events per pixel per second, the array's mean
    # sigma of the log of each pixel's BA rate, drawn once: 0 gives every pixel the same rate. Real arrays are
    # leaky in a minority of pixels: a DVS128's background fires in ~10 % of its pixels over 1.5 s, about two
    # events each, where an even rate would light twice as many pixels once
    background_spread: float = 0.0
    background_on_fraction: float = 0.7  # fraction of BA events that are ON (leak events are ON)
    shot_noise_rate_hz: float = 0.1  # Hz per pixel, extra shot noise in the dark, 1/4 of it at intensity >= 1: dim scenes are noisier
    hot_pixel_fraction: float = 2e-4  # fraction of pixels that are hot (3 of 128x128)
    hot_pixel_rate_hz: float = 20.0  # events per second of each hot pixel, either polarity
    log_eps: float = 0.01  # intensity units (1.0 = lit indoor scene): dark current inside the log

    def __post_init__(self):
        for name in ("threshold_on", "threshold_off", "cutoff_hz", "cutoff_floor_hz", "log_eps", "rebound_us"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}")
        for name in ("threshold_mismatch", "cutoff_mismatch", "refractory_us", "background_rate_hz", "background_spread", "shot_noise_rate_hz",
                     "hot_pixel_rate_hz"):
            value = getattr(self, name)
            if not (value >= 0 and math.isfinite(value)):
                raise ValueError(f"{name} must be finite and >= 0, got {value}")
        for name in ("background_on_fraction", "hot_pixel_fraction", "reference_spread", "repeat_fraction", "repeat_more",
                     "rebound_fraction"):
            if not 0 <= getattr(self, name) <= 1:
                raise ValueError(f"{name} must lie in [0, 1], got {getattr(self, name)}")


@numba.njit(cache=True, nogil=True)
def _integrate(log_i, decay, lp, ref, theta_on, theta_off, crossing, lp_before):
    """lp += (1 - decay) * (log_i - lp) per pixel. Returns m: crossing[:m] holds the pixels now at least
    one threshold from their reference, lp_before[:m] their level before this step."""
    m = 0
    for i in range(lp.shape[0]):
        old = lp[i]
        new = old + (1.0 - decay[i]) * (log_i[i] - old)
        lp[i] = new
        d = new - ref[i]
        if d + TOLERANCE >= theta_on[i] or TOLERANCE - d >= theta_off[i]:
            crossing[m] = i
            lp_before[m] = old
            m += 1
    return m


@numba.njit(cache=True, nogil=True)
def _n_crossed(excess, theta):
    """Thresholds crossed by a level ``excess`` past the reference (0 when below one threshold)."""
    return max(int(math.floor((excess + TOLERANCE) / theta)), 0)


@numba.njit(cache=True, nogil=True)
def _crossing_time(level, old, new, t_prev, dt):
    """Microsecond at which a line from ``old`` (t_prev) to ``new`` (t_prev + dt) meets ``level``,
    rounded, within [t_prev + 1, t_prev + dt]."""
    frac = (level - old) / (new - old) if new != old else 1.0
    offset = int(math.floor(min(max(frac, 0.0), 1.0) * dt + 0.5))
    return t_prev + min(max(offset, 1), dt)


@numba.njit(cache=True, nogil=True)
def _events(crossing, lp_before, m, lp, ref, theta_on, theta_off, last_t, refractory, t_prev, dt, width,
            noise_pix, noise_t, noise_p, out_template):
    """Signal events of the m crossing pixels (moving their references), merged with the noise, sorted by
    time (stable), thinned by the refractory period (updating last_t). Returns them as records."""
    n_signal = 0
    for j in range(m):
        i = crossing[j]
        d = lp[i] - ref[i]
        n_signal += _n_crossed(d, theta_on[i]) if d > 0 else _n_crossed(-d, theta_off[i])
    n = n_signal + noise_pix.shape[0]
    pix = np.empty(n, dtype=np.int64)
    times = np.empty(n, dtype=np.int64)
    pol = np.empty(n, dtype=np.uint8)
    k = 0
    for j in range(m):
        i = crossing[j]
        old, new, r = lp_before[j], lp[i], ref[i]
        if new > r:
            theta, sign, polarity = theta_on[i], 1.0, 1
            count = _n_crossed(new - r, theta)
        else:
            theta, sign, polarity = theta_off[i], -1.0, 0
            count = _n_crossed(r - new, theta)
        for c in range(1, count + 1):
            pix[k] = i
            times[k] = _crossing_time(r + sign * c * theta, old, new, t_prev, dt)
            pol[k] = polarity
            k += 1
        ref[i] = r + sign * count * theta
    pix[k:] = noise_pix
    times[k:] = noise_t
    pol[k:] = noise_p
    order = np.argsort(times, kind="mergesort")
    out = np.empty(n, dtype=out_template.dtype)
    kept = 0
    for o in order:
        i = pix[o]
        t = times[o]
        if t - last_t[i] >= refractory:
            last_t[i] = t
            e = out[kept]
            e.x = i % width
            e.y = i // width
            e.t = t
            e.p = pol[o]
            kept += 1
    return out[:kept]


_NO_PIX = np.zeros(0, dtype=np.int64)
NOISE_BACKGROUND, NOISE_HOT, NOISE_SHOT = 0, 1, 2
NOISE_HORIZON_US = 100_000  # noise is drawn this far ahead in one go
_NO_P = np.zeros(0, dtype=np.uint8)


def _by_time(*parts: np.ndarray) -> np.ndarray:
    """The events of ``parts`` in one array, sorted by time (stable: ties keep the parts' order)."""
    merged = concatenate(list(parts))
    return merged[np.argsort(merged["t"], kind="stable")]


def _read_only(array):
    view = array.view()
    view.flags.writeable = False
    return view


class DvsEmulator:
    """Turns a sequence of linear-intensity frames (float [H, W], >= 0, ~1.0 = lit indoor scene) into DVS
    events. Each pixel starts at rest on ``first_frame`` (reference = its level), at time ``t0_us``.

    ``rng`` is a seed or a Generator (then shared: its state advances with every step). x is the column,
    y the row of the frame (origin top-left).
    """

    def __init__(self, first_frame: np.ndarray, t0_us: int, params: PixelParams = PixelParams(), rng: np.random.Generator | int = 0):
        first = np.asarray(first_frame, dtype=np.float32)
        if first.ndim != 2 or first.size == 0:
            raise ValueError(f"frames must be non-empty 2-D [H, W] arrays, got shape {first.shape}")
        self.params = params
        self.shape = first.shape
        self._rng = rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)
        self._t = int(t0_us)
        n = first.size
        self._theta_on = self._draw_thresholds(params.threshold_on, n)
        self._theta_off = self._draw_thresholds(params.threshold_off, n)
        n_hot = int(round(params.hot_pixel_fraction * n))
        self._hot = np.sort(self._rng.choice(n, n_hot, replace=False)).astype(np.int64)
        self._background_cdf = None  # even BA rate; else where each BA event lands, by the pixel's share
        if params.background_spread > 0:
            share = np.cumsum(self._rng.lognormal(0.0, params.background_spread, n))
            self._background_cdf = share / share[-1]
        self._bandwidth = None  # per-pixel factor on the cutoff; None: all 1
        if params.cutoff_mismatch > 0:
            self._bandwidth = self._rng.lognormal(0.0, params.cutoff_mismatch, n).astype(np.float32)
        self._lp = self._log(self._flat(first)).astype(np.float64)
        self._ref = self._lp.copy()
        if params.reference_spread > 0:
            self._ref -= params.reference_spread * self._rng.uniform(-self._theta_off, self._theta_on)
        self._last_t = np.full(n, NEVER_FIRED, dtype=np.int64)
        # scratch, reused every step
        self._log_i = np.empty(n, dtype=np.float32)
        self._decay = np.zeros(n, dtype=np.float32)
        self._crossing = np.empty(n, dtype=np.int64)
        self._lp_before = np.empty(n, dtype=np.float64)
        self._template = np.empty(0, dtype=EVENT_DTYPE)
        self._rebounds = np.empty(0, dtype=EVENT_DTYPE)  # rebound OFFs due after the last frame, sorted by t
        # noise candidates drawn ahead: (pixel, time, polarity, kind, thinning draw), sorted by time
        self._noise_buffer = (_NO_PIX, _NO_PIX, _NO_P, _NO_P, np.zeros(0))
        self._noise_next = 0
        self._noise_until = self._t

    def _draw_thresholds(self, mean, n):
        theta = self._rng.normal(mean, self.params.threshold_mismatch, n)
        return np.maximum(theta, MIN_THRESHOLD_FRACTION * mean)

    @property
    def t_us(self) -> int:
        """Time of the last frame seen."""
        return self._t

    @property
    def theta_on(self) -> np.ndarray:
        """Per-pixel ON thresholds [H, W] (read-only view)."""
        return _read_only(self._theta_on.reshape(self.shape))

    @property
    def theta_off(self) -> np.ndarray:
        """Per-pixel OFF thresholds [H, W] (read-only view)."""
        return _read_only(self._theta_off.reshape(self.shape))

    @property
    def hot_pixels(self) -> np.ndarray:
        """(x, y) rows of the hot pixels (as denoise.find_hot_pixels returns them)."""
        width = self.shape[1]
        return np.stack([self._hot % width, self._hot // width], axis=1)

    def _flat(self, frame) -> np.ndarray:
        frame = np.asarray(frame, dtype=np.float32)
        if frame.shape != self.shape:
            raise ValueError(f"frame shape {frame.shape} differs from the sensor's {self.shape}")
        return frame.reshape(-1)

    def _log(self, frame, out=None):
        out = np.maximum(frame, 0, out=out)
        out += np.float32(self.params.log_eps)
        return np.log(out, out=out)

    def _filter_decay(self, frame, dt_s):
        """exp(-2 pi f dt) per pixel, f = max(cutoff_hz * I * the pixel's bandwidth factor, cutoff_floor_hz); 0 (no
        filter) for an infinite cutoff."""
        p = self.params
        if math.isinf(p.cutoff_hz):
            return self._decay  # zeros
        scale = -2 * math.pi * dt_s
        np.multiply(frame, np.float32(scale * p.cutoff_hz), out=self._decay)
        if self._bandwidth is not None:
            self._decay *= self._bandwidth
        np.minimum(self._decay, np.float32(scale * p.cutoff_floor_hz), out=self._decay)
        return np.exp(self._decay, out=self._decay)

    def _draw_noise(self, until: int) -> None:
        """Draws the noise candidates of (noise_until, until] in one go: per-step draws of a few events
        each cost more in numpy call overhead than the whole rest of a step."""
        p, rng, n = self.params, self._rng, self.shape[0] * self.shape[1]
        start = self._noise_until
        span_s = (until - start) * 1e-6
        n_ba, n_hot, n_shot = (int(c) for c in rng.poisson((p.background_rate_hz * n * span_s, p.hot_pixel_rate_hz * len(self._hot) * span_s, p.shot_noise_rate_hz * n * span_s)))
        pix = np.concatenate((
            rng.integers(0, n, n_ba) if self._background_cdf is None
            else np.minimum(np.searchsorted(self._background_cdf, rng.random(n_ba), "right"), n - 1),
            self._hot[rng.integers(0, len(self._hot), n_hot)] if n_hot else _NO_PIX,
            rng.integers(0, n, n_shot),
        ))
        kind = np.repeat(np.array([NOISE_BACKGROUND, NOISE_HOT, NOISE_SHOT], np.uint8), (n_ba, n_hot, n_shot))
        times = start + 1 + rng.integers(0, until - start, len(pix))
        on_probability = np.where(kind == NOISE_BACKGROUND, p.background_on_fraction, 0.5)
        polarity = (rng.random(len(pix)) < on_probability).astype(np.uint8)
        thinning = rng.random(len(pix))  # shot noise: accepted at its step by the pixel's brightness then
        order = np.argsort(times, kind="stable")
        rest = slice(self._noise_next, None)
        self._noise_buffer = tuple(np.concatenate((old[rest], new[order])) for old, new in zip(self._noise_buffer, (pix, times, polarity, kind, thinning)))
        self._noise_next = 0
        self._noise_until = until

    def _noise(self, frame, t_prev, dt):
        """Pixels, times, polarities of BA, hot-pixel and shot noise in (t_prev, t_prev + dt]."""
        t_end = t_prev + dt
        if t_end > self._noise_until:
            self._draw_noise(max(t_end, self._noise_until + NOISE_HORIZON_US))
        pix, times, polarity, kind, thinning = self._noise_buffer
        lo = self._noise_next
        hi = lo + int(np.searchsorted(times[lo:], t_end, "right"))
        self._noise_next = hi
        if hi == lo:
            return _NO_PIX, _NO_PIX, _NO_P
        pix, times, polarity, kind, thinning = pix[lo:hi], times[lo:hi], polarity[lo:hi], kind[lo:hi], thinning[lo:hi]
        shot = kind == NOISE_SHOT
        if shot.any():  # thinning: accept with the pixel's rate relative to the dark one
            keep = ~shot | (thinning < 1 - (1 - SHOT_NOISE_BRIGHT_FACTOR) * np.minimum(frame[pix], 1))
            pix, times, polarity = pix[keep], times[keep], polarity[keep]
        return pix, times, polarity

    def step(self, frame: np.ndarray, t_us: int) -> np.ndarray:
        """Events (EVENT_DTYPE, sorted by t, all with t_prev < t <= t_us) caused by the change from the
        previous frame to this one, plus noise in that interval."""
        t_us = int(t_us)
        dt = t_us - self._t
        if dt <= 0:
            raise ValueError(f"frame times must increase: {t_us} after {self._t}")
        frame = self._flat(frame)
        log_i = self._log(frame, out=self._log_i)
        decay = self._filter_decay(frame, dt * 1e-6)
        m = _integrate(log_i, decay, self._lp, self._ref, self._theta_on, self._theta_off, self._crossing, self._lp_before)
        noise_pix, noise_t, noise_p = self._noise(frame, self._t, dt)
        t_prev, self._t = self._t, t_us
        if m == 0 and len(noise_pix) == 0:
            events = np.empty(0, dtype=EVENT_DTYPE)
        else:
            events = _events(self._crossing, self._lp_before, m, self._lp, self._ref, self._theta_on, self._theta_off,
                             self._last_t, self.params.refractory_us, t_prev, dt, self.shape[1],
                             noise_pix, noise_t, noise_p, self._template).view(EVENT_DTYPE)  # numba orders the fields by offset; same layout
        return self._repeat(self._rebound(events, t_us), t_us)

    def _repeat(self, events: np.ndarray, t_us: int) -> np.ndarray:
        """The events with a share repeated 0-4 us later (never after t_us), each copy repeated again with the
        chance repeat_more, sorted by time (stable)."""
        p = self.params
        if p.repeat_fraction == 0 or len(events) == 0:
            return events
        pool = events[events["p"] == 1] if p.repeat_on_only else events
        chosen = pool[self._rng.random(len(pool)) < p.repeat_fraction]
        copies = [events, chosen]
        while p.repeat_more > 0 and len(copies[-1]):
            copies.append(copies[-1][self._rng.random(len(copies[-1])) < p.repeat_more])
        for copy in copies[1:]:
            copy["t"] = np.minimum(copy["t"] + self._rng.integers(0, 5, len(copy)), t_us)
        return _by_time(*copies)

    def _rebound(self, events: np.ndarray, t_us: int) -> np.ndarray:
        """The events with the rebound OFFs now due merged in (sorted by time, stable); the rebounds of this
        step's ON events that fall after t_us wait for a later step."""
        p = self.params
        if p.rebound_fraction == 0:
            return events
        on = events[events["p"] == 1]
        new = on[self._rng.random(len(on)) < p.rebound_fraction]
        new["p"] = 0
        new["t"] += np.maximum(np.rint(self._rng.lognormal(math.log(p.rebound_us), REBOUND_SPREAD, len(new))), 1).astype(np.int64)
        # the rebound resets the pixel: its refractory period runs from the rebound
        np.maximum.at(self._last_t, new["y"].astype(np.int64) * self.shape[1] + new["x"], new["t"])
        pending = _by_time(self._rebounds, new)
        due = int(np.searchsorted(pending["t"], t_us, "right"))
        self._rebounds = pending[due:]
        if due == 0:
            return events
        return _by_time(events, pending[:due])

    def run(self, frames: Iterable[tuple[int, np.ndarray]]) -> np.ndarray:
        """Steps through (t_us, frame) pairs; all their events, concatenated (sorted by t)."""
        return concatenate([self.step(frame, t) for t, frame in frames])
