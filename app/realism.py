"""How real do synthetic recordings look? Measured without labelled real gestures.

Everything works on windows as the classifier sees them: ``n_frames * dt_us`` of events (0.9 s for the shipped
model), framed by the model's own framing (``FramingConfig``: its spatial map crops and pools any sensor to 32x32
as ``masnn classify`` does) and summed over time into counts (2, S, S), channel 0 OFF, 1 ON.

Per window (``window_stats``): events_per_s (over the part of the window the recording covers), on_fraction,
active_pixel_fraction (pixels with any event), events_per_active_pixel; the moving regions: the 8-connected
components of the pixels with at least ``region_threshold`` events (10 % of the window's 95th-percentile count of
its active pixels, at least 2), their count, the largest one's area as a fraction of the frame and its fill (its
pixels over its bounding box: a filled blob is near 1, an outline low); and activity per image region, the share
of the window's events in each cell of a 4x4 grid (row-major, top left first). Three more come from the window's
events at the sensor's own resolution and timing (``event_timing``): isolated_fraction, the share a 10 ms
background-activity filter removes (an event no neighbouring pixel preceded within 10 ms: the scattered events
real sensors make inside and around moving regions), repeat_fraction, the share that repeat their pixel's
previous event within 4 us (a DVS128's readout reports about one event in eight twice),
mixed_polarity_fraction: of the pixels that fire at least twice within a frame of 45 ms (the shipped framing's dt;
frames from the window's first event), the share that fire both polarities in it (a real textured limb fires ON
and OFF all over a moving region; a rendered one mostly one polarity along each edge), and rebound_fraction: of
the ON events (repeats left out), the share whose pixel fires OFF next, within 1.5 ms (a DVS128 pixel does so
after about one ON event in three, 0.5 ms later: its reset rings).

Real vs synthetic (``cross_validate``): two small classifiers, logistic regression on the statistics and a tiny
CNN on log-count frames, evaluated leaving one real recording out at a time. Each fold tests on the held-out
recording's windows and as many synthetic windows, from synthetic recordings none of the fold's training windows
come from; it trains on the other real windows and as many synthetic ones, drawn round-robin across recordings.
Balanced accuracy: 50 % means the windows cannot be told apart, 100 % that every one can.
"""
from __future__ import annotations

import math
import re
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from masnn.datasets.events import EventFileError
from masnn.datasets.io.readers import detect_format, read_events
from masnn.datasets.transforms.pipeline import FramingConfig, frame_events

# the recordings of people in masnn's shared real folder; a folder holding none of them is used whole
PEOPLE_PATTERNS = ("dvs128_aedat2/*.aedat", "dvsgesture_bs2/*.bs2", "*person*.aedat4")
MIN_EVENTS = 50  # windows with fewer events show nothing that moves: left out
REGION_FRACTION, REGION_MIN = 0.1, 2
GRID = 4
SCALARS = ("events_per_s", "on_fraction", "active_pixel_fraction", "events_per_active_pixel",
           "region_count", "largest_region_area", "largest_region_fill", "isolated_fraction", "repeat_fraction",
           "mixed_polarity_fraction", "rebound_fraction")
ISOLATION_US, REPEAT_US, MIXED_FRAME_US, REBOUND_US = 10_000, 4, 45_000, 1_500
NO_TIMING = (math.nan, math.nan, math.nan, math.nan)
STATS = SCALARS + tuple(f"activity_r{r}c{c}" for r in range(GRID) for c in range(GRID))


@dataclass(frozen=True)
class Window:
    """One classifier window: its counts (2, S, S) and the seconds of it the recording covers."""

    source: str
    start_us: int
    counts: np.ndarray
    seconds: float
    timing: tuple[float, ...] = NO_TIMING  # (isolated, repeat, mixed_polarity, rebound fractions), see event_timing


def event_timing(events: np.ndarray, sensor_size: tuple[int, int]) -> tuple[float, float, float, float]:
    """(isolated_fraction, repeat_fraction, mixed_polarity_fraction, rebound_fraction) of time-ordered ``events``
    (see the module); NaN without events (mixed polarity also where no pixel fires twice within a frame, the
    rebounds where no ON event is left)."""
    from masnn.datasets.transforms.denoise import DenoiseBackgroundActivity

    if not len(events):
        return NO_TIMING
    supported = len(DenoiseBackgroundActivity(tuple(sensor_size), ISOLATION_US)(events))
    pixel = events["y"].astype(np.int64) * sensor_size[0] + events["x"]
    order = np.argsort(pixel, kind="stable")  # each pixel's events in time order
    same_pixel = pixel[order][1:] == pixel[order][:-1]
    repeated = same_pixel & (np.diff(events["t"][order]) <= REPEAT_US)
    repeats = np.count_nonzero(repeated)
    kept = order[np.r_[True, ~repeated]]  # each pixel's events in time order, repeats left out
    is_on, next_same_pixel = events["p"][kept] != 0, pixel[kept][1:] == pixel[kept][:-1]
    rebounds = np.count_nonzero(next_same_pixel & is_on[:-1] & ~is_on[1:] & (np.diff(events["t"][kept]) <= REBOUND_US))
    rebound = rebounds / np.count_nonzero(is_on) if is_on.any() else math.nan
    frame = (events["t"] - events["t"][0]) // MIXED_FRAME_US
    _, cell, fired = np.unique(frame * (sensor_size[0] * sensor_size[1]) + pixel, return_inverse=True, return_counts=True)
    on = np.bincount(cell, weights=events["p"] != 0, minlength=len(fired))
    busy = fired >= 2
    mixed = np.count_nonzero(busy & (on > 0) & (on < fired)) / np.count_nonzero(busy) if busy.any() else math.nan
    return 1 - supported / len(events), repeats / len(events), mixed, rebound


def frame_window(events: np.ndarray, sensor_size: tuple[int, int], config: FramingConfig, start: int) -> np.ndarray:
    """Counts (2, S, S) of the window from ``start``, through the model's framing (time-ordered ``events``)."""
    end = start + config.window_us
    t = events["t"]
    lo, hi = np.searchsorted(t, start - (config.denoise_us or 0)), np.searchsorted(t, end)
    frames = frame_events(events[lo:hi], sensor_size, config, start, config.n_frames)  # (T, 2, S, S)
    return frames.sum(axis=0, dtype=np.int64)


def region_threshold(total: np.ndarray) -> float:
    active = total[total > 0]
    return max(REGION_MIN, REGION_FRACTION * float(np.percentile(active, 95))) if active.size else REGION_MIN


def window_stats(counts: np.ndarray, seconds: float, timing: tuple[float, ...] = NO_TIMING) -> dict:
    """The statistics of one window's counts (2, S, S) covering ``seconds``, with its events' ``timing`` (see the
    module)."""
    import cv2

    total = counts.sum(axis=0)  # (S, S)
    events = int(total.sum())
    active = int(np.count_nonzero(total))
    mask = (total >= region_threshold(total)).astype(np.uint8)
    n, _, boxes, _ = cv2.connectedComponentsWithStats(mask, connectivity=8)
    boxes = boxes[1:]  # row 0 is the background
    largest = boxes[np.argmax(boxes[:, cv2.CC_STAT_AREA])] if len(boxes) else None
    rows, cols = (np.linspace(0, s, GRID + 1).astype(int) for s in total.shape)
    cells = np.add.reduceat(np.add.reduceat(total, rows[:-1], axis=0), cols[:-1], axis=1)  # (GRID, GRID)
    stats = {
        "events_per_s": events / seconds,
        "on_fraction": counts[1].sum() / events if events else math.nan,
        "active_pixel_fraction": active / total.size,
        "events_per_active_pixel": events / active if active else math.nan,
        "region_count": n - 1,
        "largest_region_area": largest[cv2.CC_STAT_AREA] / total.size if largest is not None else 0.0,
        "largest_region_fill": (largest[cv2.CC_STAT_AREA] / (largest[cv2.CC_STAT_WIDTH] * largest[cv2.CC_STAT_HEIGHT])
                                if largest is not None else math.nan),
        "isolated_fraction": timing[0],
        "repeat_fraction": timing[1],
        "mixed_polarity_fraction": timing[2],
        "rebound_fraction": timing[3],
    }
    shares = cells / events if events else np.full(cells.shape, math.nan)
    stats.update({f"activity_r{r}c{c}": shares[r, c] for r in range(GRID) for c in range(GRID)})
    return {key: float(value) for key, value in stats.items()}


def summarize(stats: list[dict]) -> dict:
    """Median and interquartile range of each statistic over windows: {name: [median, q25, q75]} (None where no
    window has a value)."""
    table = np.array([[s[key] for key in STATS] for s in stats], dtype=float).reshape(-1, len(STATS))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN columns: None below
        q = np.nanpercentile(table, [50, 25, 75], axis=0) if len(table) else np.full((3, len(STATS)), np.nan)
    return {key: [None if math.isnan(v) else float(v) for v in q[:, i]] for i, key in enumerate(STATS)}


# ---- which windows -------------------------------------------------------------------------------------------

def _recordings(folder: Path) -> list[Path]:
    files = []
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        try:
            detect_format(path)
            files.append(path)
        except EventFileError:
            pass
    return files


def real_recordings(folder: str | Path) -> list[Path]:
    """The recordings of people in ``folder`` (``PEOPLE_PATTERNS``), or every recording in it if none match."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder}: no such folder of real recordings")
    people = sorted({p for pattern in PEOPLE_PATTERNS for p in folder.glob(pattern)})
    return people or _recordings(folder)


def synthetic_sources(path: str | Path, users: int | None = None) -> dict[str, list[tuple[int, int]]]:
    """Recording -> labelled (start, end) intervals: the samples of a `masnn synth gesture` folder (of its
    first ``users`` subjects by number), else every recording in a folder of clips (or one file), whole."""
    from masnn.datasets.loaders.gesture import gesture_folder, gesture_samples

    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such file or folder of synthetic recordings")
    try:
        gesture_folder(path)
    except FileNotFoundError:
        files = [path] if path.is_file() else _recordings(path)
        if not files:
            raise FileNotFoundError(f"{path}: no recordings and no DVS128 Gesture layout") from None
        return {str(f): [] for f in files}  # [] = the whole recording
    samples = [s for split in ("train", "test") for s in gesture_samples(path, split)]
    subjects = sorted({s.subject for s in samples}, key=lambda s: int(re.sub(r"\D", "", s) or 0))[:users]
    sources: dict[str, list[tuple[int, int]]] = {}
    for s in samples:
        if s.subject in subjects:
            sources.setdefault(s.path, []).append((s.start_us, s.end_us))
    return sources


def _span(events: np.ndarray) -> tuple[int, int]:
    return int(events["t"][0]), int(events["t"][-1]) + 1


def _framed(path, events: np.ndarray, sensor_size, starts, config: FramingConfig) -> list[Window]:
    """The windows from ``starts`` of one recording's events, less those with under MIN_EVENTS events."""
    if not len(events):
        return []
    end, windows = _span(events)[1], []
    for start in map(int, starts):
        counts = frame_window(events, sensor_size, config, start)
        if counts.sum() >= MIN_EVENTS:
            inside = events[np.searchsorted(events["t"], start) : np.searchsorted(events["t"], start + config.window_us)]
            windows.append(Window(str(path), start, counts, min(config.window_us, end - start) / 1e6,
                                  event_timing(inside, sensor_size)))
    return windows


def real_windows(paths, config: FramingConfig, per_recording: int) -> tuple[list[Window], list[dict]]:
    """Up to ``per_recording`` evenly spaced windows of each recording (overlapping where it is short). Returns
    the windows and, for each recording, {file, windows, dropped, medians of the scalar statistics}."""
    windows, listing, length = [], [], config.window_us
    for path in paths:
        events, info = read_events(path)
        t0, t1 = _span(events) if len(events) else (0, 0)
        n = min(per_recording, max(1, math.ceil((t1 - t0) / length)))
        starts = t0 + np.round(np.linspace(0, max(0, t1 - t0 - length), n)).astype(np.int64)
        kept = _framed(path, events, info.sensor_size, starts, config)
        windows += kept
        medians = summarize([window_stats(w.counts, w.seconds, w.timing) for w in kept])
        listing.append({"file": str(path), "windows": len(kept), "dropped": n - len(kept), **{k: medians[k][0] for k in SCALARS}})
    return windows, listing


def synthetic_windows(sources: dict, config: FramingConfig, count: int, seed: int) -> list[Window]:
    """``count`` windows spread round-robin over the recordings (in an order shuffled by ``seed``), each at a
    random start inside one of its labelled intervals, taken in a shuffled order (less MIN_EVENTS rejects)."""
    rng = np.random.default_rng(seed)
    names = [list(sources)[i] for i in rng.permutation(len(sources))]
    windows, length = [], config.window_us
    for k, name in enumerate(names):
        wanted = len(range(k, count, len(names)))
        events, info = read_events(name) if wanted else (np.empty(0), None)
        if len(events):
            intervals = sources[name] or [_span(events)]
            picks = [intervals[i % len(intervals)] for i in rng.permutation(max(wanted, len(intervals)))[:wanted]]
            starts = [lo + int(rng.integers(0, max(1, hi - lo - length + 1))) for lo, hi in picks]
            windows += _framed(name, events, info.sensor_size, starts, config)
    return windows


# ---- the real-vs-synthetic classifiers -----------------------------------------------------------------------

def _features(windows: list[Window]) -> np.ndarray:
    stats = [window_stats(w.counts, w.seconds, w.timing) for w in windows]
    x = np.array([[s[key] for key in STATS] for s in stats], dtype=np.float32).reshape(-1, len(STATS))
    for i, key in enumerate(STATS):
        if key in ("events_per_s", "events_per_active_pixel", "region_count"):
            x[:, i] = np.log1p(x[:, i])
    return np.nan_to_num(x)


def _frames(windows: list[Window]) -> np.ndarray:
    return np.log1p(np.stack([w.counts for w in windows]).astype(np.float32)) / 4  # (N, 2, S, S)


def _tiny_cnn(n_features: int):
    from torch import nn

    return nn.Sequential(
        nn.Conv2d(2, 8, 4, stride=2, padding=1), nn.ReLU(),  # (B, 8, S/2, S/2)
        nn.Conv2d(8, 16, 3, stride=2, padding=1), nn.ReLU(),  # (B, 16, S/4, S/4)
        nn.Conv2d(16, 16, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),  # (B, 16)
        nn.Linear(16, 1))


def _logistic(n_features: int):
    from torch import nn

    return nn.Linear(n_features, 1)


# name: (model builder, inputs of windows, full-batch epochs, learning rate, weight decay)
MODELS = {"statistics": (_logistic, _features, 300, 0.05, 1e-2), "cnn": (_tiny_cnn, _frames, 150, 0.01, 1e-4)}


def _fit_predict(kind: str, x_train, y_train, x_test, seed: int) -> np.ndarray:
    """P(real) of each test input from a ``MODELS[kind]`` model trained full-batch (classes weighted equally)."""
    import torch

    build, _, epochs, lr, decay = MODELS[kind]
    if kind == "statistics":  # standardise on the training windows only
        mean, std = x_train.mean(0), x_train.std(0) + 1e-6
        x_train, x_test = (x_train - mean) / std, (x_test - mean) / std
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # batches this small run fastest on one thread (several times faster on a busy machine)
    try:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            model = build(x_train.shape[1])
            xs, ys = torch.from_numpy(x_train), torch.from_numpy(y_train.astype(np.float32))
            positives = float(ys.sum())
            loss_fn = torch.nn.BCEWithLogitsLoss(pos_weight=torch.tensor((len(ys) - positives) / max(1.0, positives)))
            optimiser = torch.optim.Adam(model.parameters(), lr=lr, weight_decay=decay)
            for _ in range(epochs):
                optimiser.zero_grad()
                loss_fn(model(xs).squeeze(1), ys).backward()
                optimiser.step()
            with torch.no_grad():
                return torch.sigmoid(model(torch.from_numpy(x_test)).squeeze(1)).numpy()
    finally:
        torch.set_num_threads(threads)


def balanced_accuracy(truth: np.ndarray, predicted: np.ndarray) -> float:
    """Mean of the recalls of the classes present (real = 1, synthetic = 0)."""
    return float(np.mean([np.mean(predicted[truth == c] == c) for c in (0, 1) if np.any(truth == c)]))


def _round_robin(indices: np.ndarray, groups: np.ndarray, rng) -> np.ndarray:
    """``indices`` reordered one per group in turn (groups in a random order), so a prefix spreads over groups."""
    by_group = [rng.permutation(indices[groups[indices] == g]) for g in rng.permutation(np.unique(groups[indices]))]
    return np.array([i for turn in range(max(map(len, by_group), default=0)) for g in by_group if turn < len(g)
                     for i in [g[turn]]], dtype=np.int64)


def cross_validate(real: list[Window], synthetic: list[Window], seed: int = 0) -> dict:
    """Leave-one-real-recording-out balanced accuracy of each ``MODELS`` classifier (see the module)."""
    real_groups = np.array([w.source for w in real])
    sources = sorted(set(real_groups))
    if len(sources) < 2:
        raise ValueError(f"the realism classifier needs windows of at least two real recordings (got {len(sources)})")
    syn_names = [w.source for w in synthetic]
    syn_groups = np.unique(syn_names, return_inverse=True)[1] if len(set(syn_names)) > 1 else np.arange(len(synthetic))
    inputs = {kind: {"real": spec[1](real), "synthetic": spec[1](synthetic)} for kind, spec in MODELS.items()}
    folds, pooled = [], {kind: ([], []) for kind in MODELS}
    for k, held in enumerate(sources):
        rng = np.random.default_rng([seed, k])
        test_real, train_real = np.flatnonzero(real_groups == held), np.flatnonzero(real_groups != held)
        order = _round_robin(np.arange(len(synthetic)), syn_groups, rng)
        test_groups, taken = set(), 0
        for i in order:  # whole synthetic recordings into the test side until it has enough windows
            if taken >= len(test_real):
                break
            if syn_groups[i] not in test_groups:
                test_groups.add(syn_groups[i])
                taken += int(np.sum(syn_groups == syn_groups[i]))
        in_test = np.isin(syn_groups, list(test_groups))
        test_syn = order[in_test[order]][:len(test_real)]
        train_syn = order[~in_test[order]][:len(train_real)]
        fold = {"held_out": str(held), "real": len(test_real), "synthetic": len(test_syn), "train": len(train_real) + len(train_syn)}
        truth = np.r_[np.ones(len(test_real)), np.zeros(len(test_syn))]
        for kind, x in inputs.items():
            x_train = np.concatenate([x["real"][train_real], x["synthetic"][train_syn]])
            y_train = np.r_[np.ones(len(train_real)), np.zeros(len(train_syn))]
            x_test = np.concatenate([x["real"][test_real], x["synthetic"][test_syn]])
            predicted = (_fit_predict(kind, x_train, y_train, x_test, seed * 1000 + k) >= 0.5).astype(int)
            fold[kind] = balanced_accuracy(truth, predicted)
            pooled[kind][0].append(truth)
            pooled[kind][1].append(predicted)
        folds.append(fold)
    overall = {kind: balanced_accuracy(np.concatenate(t), np.concatenate(p)) for kind, (t, p) in pooled.items()}
    return {"folds": folds, "overall": overall}


# ---- the report ----------------------------------------------------------------------------------------------

def realism_report(real_folder, synthetic, config: FramingConfig, per_recording: int = 12, seed: int = 0,
                   users: int | None = None) -> dict:
    """Statistics of real and synthetic windows side by side and the real-vs-synthetic cross-validation."""
    real, listing = real_windows(real_recordings(real_folder), config, per_recording)
    sources = synthetic_sources(synthetic, users)
    fake = synthetic_windows(sources, config, 2 * len(real), seed)
    return {
        "framing": config.to_dict(), "window_s": config.window_us / 1e6, "seed": seed,
        "real": {"folder": str(real_folder), "recordings": listing, "windows": len(real),
                 "stats": summarize([window_stats(w.counts, w.seconds, w.timing) for w in real])},
        "synthetic": {"path": str(synthetic), "recordings": len(sources), "windows": len(fake),
                      "stats": summarize([window_stats(w.counts, w.seconds, w.timing) for w in fake])},
        "classifier": cross_validate(real, fake, seed),
    }


def _cell(q: list[float], percent: bool) -> str:
    if q[0] is None:
        return "-"
    text = (lambda v: f"{100 * v:.1f}%") if percent else (lambda v: f"{v:,.3g}" if abs(v) < 1000 else f"{v:,.0f}")
    return f"{text(q[0])} ({text(q[1])}-{text(q[2])})"


def report_tables(report: dict) -> list:
    """Rich tables: the statistics side by side (median (q25-q75)), then the cross-validation folds."""
    from rich.table import Table

    stats = Table(title=f"{report['window_s']:g} s windows at the model's framing: median (interquartile range)")
    stats.add_column("statistic")
    stats.add_column(f"real ({report['real']['windows']})", justify="right")
    stats.add_column(f"synthetic ({report['synthetic']['windows']})", justify="right")
    for key in STATS:
        percent = key.startswith("activity") or key in ("on_fraction", "active_pixel_fraction", "largest_region_area", "largest_region_fill",
                                                        "isolated_fraction", "repeat_fraction", "mixed_polarity_fraction",
                                                        "rebound_fraction")
        stats.add_row(key.replace("_", " "), _cell(report["real"]["stats"][key], percent), _cell(report["synthetic"]["stats"][key], percent))
    folds = Table(title="real vs synthetic, leave one real recording out: balanced accuracy (50% = indistinguishable)")
    for name in ("held-out real recording", "windows", *MODELS):
        folds.add_column(name, justify="left" if name.startswith("held") else "right")
    for fold in report["classifier"]["folds"]:
        folds.add_row(Path(fold["held_out"]).name, f"{fold['real']}+{fold['synthetic']}", *(f"{100 * fold[k]:.0f}%" for k in MODELS))
    overall = report["classifier"]["overall"]
    folds.add_row("all folds", "", *(f"{100 * overall[k]:.1f}%" for k in MODELS), style="bold")
    return [stats, folds]
