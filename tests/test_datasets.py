"""Dataset layer: sample indexes (Gesture original and tonic layouts, Gait), FrameDataset crops, FrameCache."""
import csv
import math
import multiprocessing
import os
import socket
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

import masnn.datasets.loaders.cache as cache_module
from masnn.datasets.io.readers import open_recording, read_events
from masnn.datasets.io.recording import first_event_time
from masnn.datasets.loaders.cache import FrameCache, FrameDataset, Sample, frame_window
from masnn.datasets.loaders.gait import gait_samples, gait_subjects
from masnn.datasets.loaders.gesture import NO_GESTURE, gesture_samples, no_gesture_samples, tonic_gesture_samples
from masnn.datasets.synth.generator import write_gait_dataset
from masnn.datasets.transforms.pipeline import FramingConfig, frame_recording

# 0.2 s windows: the tiny synthetic gestures last 0.6-0.8 s, so crops have room to move
SMALL = FramingConfig(dt_us=10_000, n_frames=20, size=32)


@pytest.fixture(scope="module")
def gait_root(tmp_path_factory):
    out = tmp_path_factory.mktemp("gait")
    write_gait_dataset(out, subjects=3, walks=2, seed=3, duration=0.8, workers=1)
    return out


def _csv_rows(path):
    with open(path, newline="") as f:
        return [(int(c), int(s), int(e)) for c, s, e in list(csv.reader(f))[1:]]


# ---------------------------------------------------------------- indexes


def test_gesture_samples_follow_trial_lists_and_labels(gesture_root):
    folder = gesture_root / "DvsGesture"
    for split in ("train", "test"):
        trials = (folder / f"trials_to_{split}.txt").read_text().split()
        samples = gesture_samples(gesture_root, split)
        assert len(samples) == len(trials) * 11
        assert sorted({Path(s.path).name for s in samples}) == sorted(trials)
        for name in trials:
            mine = [s for s in samples if Path(s.path).name == name]
            rows = _csv_rows(folder / name.replace(".aedat", "_labels.csv"))
            assert [(s.label + 1, s.start_us, s.end_us) for s in mine] == rows
            assert {s.subject for s in mine} == {name.split("_")[0]}
        assert sorted({s.label for s in samples}) == list(range(11))
    assert {s.subject for s in gesture_samples(gesture_root, "train")} == {"user01", "user02"}
    assert {s.subject for s in gesture_samples(gesture_root, "test")} == {"user03"}
    # root may also be the DvsGesture folder itself
    assert gesture_samples(folder, "test") == gesture_samples(gesture_root, "test")


def test_gesture_class_twice_and_overlap_are_kept(gesture_root, tmp_path):
    folder = tmp_path / "DvsGesture"
    folder.mkdir()
    (folder / "user22_led.aedat").symlink_to(gesture_root / "DvsGesture" / "user01_lab.aedat")
    (folder / "trials_to_train.txt").write_text("user22_led.aedat\n")
    (folder / "trials_to_test.txt").write_text("")
    # class 8 twice; class 9 ends after class 10 starts (the user22_led fault)
    rows = [(8, 100, 200), (8, 300, 400), (9, 500, 650), (10, 600, 700)]
    (folder / "user22_led_labels.csv").write_text("class,startTime_usec,endTime_usec\n" + "".join(f"{c},{s},{e}\n" for c, s, e in rows))
    samples = gesture_samples(tmp_path, "train")
    assert [(s.label, s.start_us, s.end_us) for s in samples] == [(7, 100, 200), (7, 300, 400), (8, 500, 650), (9, 600, 700)]
    assert gesture_samples(tmp_path, "test") == []
    with pytest.raises(FileNotFoundError, match="DvsGesture.tar.gz"):
        gesture_samples(tmp_path / "nowhere", "train")


def test_no_gesture_samples_are_the_unlabelled_stretches_a_window_long():
    a, b = "user01_lab.aedat", "user02_lab.aedat"
    labelled = [
        Sample(a, 0, 1_000_000, 2_000_000, "user01"),
        Sample(a, 2, 4_000_000, 7_000_000, "user01"),
        Sample(b, 0, 0, 1_000_000, "user02"),  # the only gesture of its recording: no stretch
        Sample(a, 1, 2_500_000, 3_000_000, "user01"),  # listed out of order
        Sample(a, 3, 4_500_000, 5_000_000, "user01"),  # inside the one before: the stretch starts after 7.0 s, not 5.0 s
        Sample(a, 4, 8_500_000, 9_000_000, "user01"),
    ]
    # a's gaps: 2.0-2.5 s and 3.0-4.0 s are under 0.9 s once 0.2 s is kept clear on both sides; 7.0-8.5 s is not
    assert no_gesture_samples(labelled, min_us=900_000, margin_us=200_000) == [Sample(a, NO_GESTURE, 7_200_000, 8_300_000, "user01")]
    assert no_gesture_samples(labelled, min_us=1_200_000, margin_us=200_000) == []
    assert [(s.start_us, s.end_us) for s in no_gesture_samples(labelled, min_us=500_000, margin_us=0)] == [
        (2_000_000, 2_500_000), (3_000_000, 4_000_000), (7_000_000, 8_500_000)]


def _tonic_table(rng, n, t0_ms):
    t = np.sort(t0_ms + rng.uniform(0, 300, n))  # ms, float as in tonic's files
    return np.stack([rng.integers(0, 128, n), rng.integers(0, 128, n), rng.integers(0, 2, n), t], axis=1)


def test_tonic_layout_samples_and_frames(tmp_path):
    rng = np.random.default_rng(0)
    tables = {}
    for split, folder, user in (("train", "ibmGestureTrain", "user01_lab"), ("test", "ibmGestureTest", "user24_led")):
        d = tmp_path / "DVSGesture" / folder / user
        d.mkdir(parents=True)
        for label in (0, 3, 10):
            table = _tonic_table(rng, 500, 1000.0 * label)
            np.save(d / f"{label}.npy", table)
            tables[(split, label)] = table
    train = tonic_gesture_samples(tmp_path, "train")
    assert [(s.label, s.subject) for s in train] == [(0, "user01"), (3, "user01"), (10, "user01")]
    assert [s.subject for s in tonic_gesture_samples(tmp_path, "test")] == ["user24"] * 3
    sample = train[1]
    table = tables[("train", 3)]
    t_us = np.rint(table[:, 3] * 1000).astype(np.int64)
    assert (sample.start_us, sample.end_us) == (t_us[0], t_us[-1] + 1)
    # frames by an independent histogram of the same events
    config = FramingConfig(dt_us=20_000, n_frames=None, size=None)
    frames, label = FrameDataset([sample], config, mode="whole")[0]
    assert label == 3
    n = math.ceil((sample.end_us - sample.start_us) / config.dt_us)
    expected = np.zeros((n, 2, 128, 128), np.float32)
    k = (t_us - sample.start_us) // config.dt_us
    np.add.at(expected, (k, table[:, 2].astype(int), table[:, 1].astype(int), table[:, 0].astype(int)), 1)
    assert frames.shape == (n, 2, 128, 128)
    np.testing.assert_array_equal(frames.numpy(), expected)


def test_tonic_absent_folder_says_where_to_get_it(tmp_path, monkeypatch):
    def no_network(*args, **kwargs):
        raise AssertionError("network access attempted")

    monkeypatch.setattr(socket, "socket", no_network)
    monkeypatch.setattr(socket, "create_connection", no_network)
    with pytest.raises(FileNotFoundError) as error:
        tonic_gesture_samples(tmp_path / "data", "train")
    message = str(error.value)
    assert str(tmp_path / "data" / "DVSGesture" / "ibmGestureTrain") in message
    assert "DvsGesture.tar.gz" in message and "figshare" in message
    assert not (tmp_path / "data").exists()  # nothing created, nothing downloaded


def test_gait_samples_labels_agree_between_splits(gait_root, tmp_path):
    subjects = gait_subjects(gait_root)
    assert subjects == ["01", "02", "03"]
    train, test = gait_samples(gait_root, "train"), gait_samples(gait_root, "test")
    assert len(train) == len(test) == 3 * 2
    for s in train + test:
        assert s.label == subjects.index(s.subject) == int(s.subject) - 1
        assert Path(s.path).parent.name == s.subject
    assert {s.label for s in train} == {s.label for s in test} == {0, 1, 2}
    events, _ = read_events(train[0].path)
    assert (train[0].start_us, train[0].end_us) == (int(events["t"][0]), int(events["t"][-1]) + 1)
    # the release's nesting DVS128-Gait-Day/origin/{train,test}
    nested = tmp_path / "DVS128-Gait-Day" / "origin"
    nested.parent.mkdir()
    nested.symlink_to(gait_root)
    assert [s.label for s in gait_samples(tmp_path, "test")] == [s.label for s in test]


# ---------------------------------------------------------------- FrameDataset


def test_frame_dataset_shapes_and_dtypes(gesture_root):
    samples = gesture_samples(gesture_root, "test")[:2]
    frames, label = FrameDataset(samples, SMALL, "random-crop")[1]
    assert frames.dtype == torch.float32 and frames.shape == (20, 2, 32, 32)
    assert isinstance(label, int) and label == samples[1].label
    assert frames.sum() > 0
    crops, _ = FrameDataset(samples, SMALL, "crops", n_crops=4)[0]
    assert crops.dtype == torch.float32 and crops.shape == (4, 20, 2, 32, 32)
    whole, _ = FrameDataset(samples, SMALL, "whole")[0]
    assert whole.shape == (math.ceil(samples[0].duration_us / SMALL.dt_us), 2, 32, 32)
    with pytest.raises(ValueError):
        FrameDataset(samples, SMALL, "nonsense")


def test_random_crop_deterministic_per_seed_epoch_index(gesture_root):
    samples = gesture_samples(gesture_root, "train")[:6]
    a, b = FrameDataset(samples, SMALL, seed=1), FrameDataset(samples, SMALL, seed=1)
    starts = [a.window_starts(i)[0] for i in range(len(samples))]
    assert starts == [b.window_starts(i)[0] for i in range(len(samples))]
    assert torch.equal(a[2][0], b[2][0])
    a.set_epoch(1)
    moved = [a.window_starts(i)[0] for i in range(len(samples))]
    assert moved != starts
    b.set_epoch(1)
    assert torch.equal(a[3][0], b[3][0])
    assert [FrameDataset(samples, SMALL, seed=2).window_starts(i)[0] for i in range(len(samples))] != starts
    for dataset in (a, b):
        for i, s in enumerate(samples):
            start = dataset.window_starts(i)[0]
            assert (start - s.start_us) % SMALL.dt_us == 0
            assert s.start_us <= start and start + 20 * SMALL.dt_us <= s.end_us


def test_crops_evenly_spread_inside_the_sample(gesture_root):
    samples = gesture_samples(gesture_root, "test")
    dataset = FrameDataset(samples, SMALL, "crops", n_crops=10)
    window = SMALL.n_frames * SMALL.dt_us
    for i, s in enumerate(samples):
        starts = dataset.window_starts(i)
        assert len(starts) == 10 and starts[0] == s.start_us
        assert all(s.start_us <= t and t + window <= s.end_us for t in starts)
        assert starts[-1] + window > s.end_us - SMALL.dt_us  # the last crop reaches the end (within dt)
        gaps = np.diff(starts)
        ideal = (starts[-1] - starts[0]) / 9
        assert np.all(np.abs(gaps - ideal) <= SMALL.dt_us)
    crops, _ = dataset[0]
    for c, start in enumerate(dataset.window_starts(0)):
        direct = frame_window(samples[0].path, SMALL, start, samples[0].end_us, SMALL.n_frames)
        np.testing.assert_array_equal(crops[c].numpy(), direct)


def test_frames_equal_frame_recording_on_the_same_window(gesture_root, tmp_path):
    samples = gesture_samples(gesture_root, "train")[:4]
    for cache in (None, FrameCache(tmp_path / "cache")):
        dataset = FrameDataset(samples, SMALL, seed=5, cache=cache)
        for i, s in enumerate(samples):
            start = dataset.window_starts(i)[0]
            with open_recording(s.path) as recording:
                origin = first_event_time(recording)
            expected = frame_recording(s.path, SMALL, start_us=start - origin)
            assert expected.shape == (20, 2, 32, 32) and expected.sum() > 0
            np.testing.assert_array_equal(dataset[i][0].numpy(), expected)


def test_sample_shorter_than_the_window(gesture_root):
    s = gesture_samples(gesture_root, "test")[0]
    config = FramingConfig(dt_us=10_000, n_frames=120, size=32)  # 1.2 s > any tiny gesture
    dataset = FrameDataset([s], config, seed=0)
    for epoch in range(3):
        dataset.set_epoch(epoch)
        assert dataset.window_starts(0) == [s.start_us]
    frames = dataset[0][0].numpy()
    inside = (s.end_us - s.start_us) // config.dt_us  # frames wholly inside the sample
    assert frames.shape[0] == 120 and not frames[math.ceil(s.duration_us / config.dt_us) :].any()
    with open_recording(s.path) as recording:
        origin = first_event_time(recording)
    expected = frame_recording(s.path, config, start_us=s.start_us - origin)
    np.testing.assert_array_equal(frames[:inside], expected[:inside])
    assert expected[inside + 1 :].any()  # the recording goes on: those events were left out on purpose


# ---------------------------------------------------------------- FrameCache


def _counting_open(monkeypatch):
    calls = []

    def counted(path, *args, **kwargs):
        calls.append(str(path))
        return open_recording(path, *args, **kwargs)

    monkeypatch.setattr(cache_module, "open_recording", counted)
    return calls


def test_cache_hit_returns_equal_frames_without_reading(gesture_root, tmp_path, monkeypatch):
    samples = gesture_samples(gesture_root, "test")[:3]
    uncached = FrameDataset(samples, SMALL, "crops", n_crops=5)
    expected = [uncached[i][0] for i in range(3)]
    calls = _counting_open(monkeypatch)
    cache = FrameCache(tmp_path / "cache")
    dataset = FrameDataset(samples, SMALL, "crops", n_crops=5, cache=cache)
    first = [dataset[i][0] for i in range(3)]
    assert len(calls) == 3 and cache.misses == 3  # one whole-sample framing per sample
    second = [dataset[i][0] for i in range(3)]
    randoms = FrameDataset(samples, SMALL, "random-crop", cache=cache)
    for epoch in range(3):
        randoms.set_epoch(epoch)
        for i in range(3):
            randoms[i]
    assert len(calls) == 3 and cache.misses == 3 and cache.hits == 3 + 9
    for e, f, s in zip(expected, first, second):
        assert torch.equal(e, f) and torch.equal(e, s)
    assert len(list((tmp_path / "cache").glob("*.npy"))) == 3


def test_cache_misses_when_framing_or_file_changes(gesture_root, tmp_path, monkeypatch):
    s = gesture_samples(gesture_root, "test")[0]
    cache = FrameCache(tmp_path / "cache")
    variants = [SMALL, replace(SMALL, dt_us=15_000), replace(SMALL, n_frames=30), replace(SMALL, size=16), replace(SMALL, size=None)]
    keys = {cache.key(s, c) for c in variants}
    assert len(keys) == len(variants)
    assert cache.key(s, SMALL) == cache.key(s, FramingConfig(dt_us=10_000, n_frames=20, size=32))
    assert cache.key(s, SMALL) != cache.key(replace(s, end_us=s.end_us - 1), SMALL)
    calls = _counting_open(monkeypatch)
    for config in variants:
        frames, _ = FrameDataset([s], config, cache=cache)[0]
        assert frames.shape[0] == config.n_frames and frames.shape[-1] == (config.size or 128)
    assert len(calls) == len(variants) and cache.misses == len(variants)
    FrameDataset([s], replace(SMALL, dt_us=15_000), cache=cache)[0]
    assert len(calls) == len(variants)  # and each one hits once made
    stat = os.stat(s.path)
    before = cache.key(s, SMALL)
    os.utime(s.path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000))
    try:
        assert cache.key(s, SMALL) != before
    finally:
        os.utime(s.path, ns=(stat.st_atime_ns, stat.st_mtime_ns))


def _fill(root, samples, barrier, rounds):
    cache = FrameCache(root)
    barrier.wait()
    for _ in range(rounds):
        for s in samples:
            cache.sample_frames(s, SMALL)


def test_cache_two_processes_fill_the_same_entries(gesture_root, tmp_path):
    samples = gesture_samples(gesture_root, "train")[:4]
    root = tmp_path / "shared-cache"
    context = multiprocessing.get_context("fork")
    barrier = context.Barrier(2)
    workers = [context.Process(target=_fill, args=(root, samples, barrier, 2)) for _ in range(2)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(60)
    assert [w.exitcode for w in workers] == [0, 0]
    cache = FrameCache(root)
    assert sorted(p.name for p in root.iterdir()) == sorted(cache.entry_path(s, SMALL).name for s in samples)  # no temp files
    for s in samples:
        stored = np.load(cache.entry_path(s, SMALL))
        n = math.ceil(s.duration_us / SMALL.dt_us)
        np.testing.assert_array_equal(stored, frame_window(s.path, SMALL, s.start_us, s.end_us, n))
