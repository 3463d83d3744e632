"""Augmented training data: EventCache, AugmentedFrameDataset (identity recipe == FrameDataset, determinism per
(seed, epoch, index), the time stretch's longer read), training_set, TrainConfig.augment and `masnn train --augment`."""
import dataclasses
import os
import subprocess
import sys
from dataclasses import replace

import numpy as np
import pytest
import torch

import masnn.datasets.loaders.augmented as augmented_module
from masnn.datasets.io.readers import read_events
from masnn.datasets.loaders.augmented import AugmentedFrameDataset, EventCache, training_set
from masnn.datasets.loaders.cache import FrameCache, FrameDataset, Sample, frame_window
from masnn.datasets.loaders.gesture import NO_GESTURE, gesture_samples
from masnn.datasets.loaders.table import GESTURE_CLASSES, time_reversed_labels
from masnn.datasets.transforms.augment_recipe import RECOMMENDED
from masnn.datasets.transforms.pipeline import FramingConfig
from masnn.training.card import training_block
from masnn.training.config import TrainConfig, load_config

SMALL = FramingConfig(dt_us=10_000, n_frames=20, size=32)  # 0.2 s windows inside 0.6-0.8 s tiny gestures


@pytest.fixture(scope="module")
def samples(gesture_root):
    return gesture_samples(gesture_root, "train")[:5]


@pytest.mark.parametrize("config", [SMALL, replace(SMALL, denoise_us=5_000)], ids=["plain", "denoised"])
def test_identity_recipe_frames_equal_frame_dataset(samples, tmp_path, config):
    reference = FrameDataset(samples, config, seed=3, cache=FrameCache(tmp_path / "frames"))
    for cache in (None, EventCache(tmp_path / "events")):
        dataset = AugmentedFrameDataset(samples, config, "identity", seed=3, cache=cache)
        for epoch in range(2):
            reference.set_epoch(epoch)
            dataset.set_epoch(epoch)
            for i in range(len(samples)):
                assert dataset.window_starts(i) == reference.window_starts(i)
                frames, label = dataset[i]
                expected, expected_label = reference[i]
                assert frames.dtype == torch.float32 and frames.shape == (20, 2, 32, 32) and label == expected_label
                assert frames.sum() > 0 and torch.equal(frames, expected)


def test_augmented_frames_deterministic_per_seed_epoch_index(samples, tmp_path):
    cache = EventCache(tmp_path / "events")
    a = AugmentedFrameDataset(samples, SMALL, RECOMMENDED, seed=1, cache=cache)
    b = AugmentedFrameDataset(samples, SMALL, RECOMMENDED, seed=1)  # no cache: the same events
    first = [a[i][0] for i in range(len(samples))]
    for i in reversed(range(len(samples))):  # whatever the order of access
        assert torch.equal(b[i][0], first[i])
    assert all(f.shape == (20, 2, 32, 32) and f.dtype == torch.float32 and f.sum() > 0 for f in first)
    plain = AugmentedFrameDataset(samples, SMALL, "identity", seed=1)
    assert all(not torch.equal(first[i], plain[i][0]) for i in range(len(samples)))  # augmentation changed them
    a.set_epoch(1)
    assert all(not torch.equal(a[i][0], first[i]) for i in range(len(samples)))  # a new epoch, new draws
    c = AugmentedFrameDataset(samples, SMALL, RECOMMENDED, seed=2, cache=cache)
    assert any(not torch.equal(c[i][0], first[i]) for i in range(len(samples)))


def test_time_stretch_reads_the_longer_window(samples):
    """Stretched by 0.5, output frame k holds the input of frames 2k and 2k + 1 from the same start."""
    dataset = AugmentedFrameDataset(samples, SMALL, "stretch=0.5-0.5", seed=4)
    longer = replace(SMALL, n_frames=40)
    for i, sample in enumerate(samples):
        start = dataset.window_starts(i)[0]
        whole = frame_window(sample.path, longer, start, sample.end_us, 40)  # (40, 2, 32, 32)
        expected = whole.reshape(20, 2, 2, 32, 32).sum(1)
        np.testing.assert_array_equal(dataset[i][0].numpy(), expected)


def test_event_cache_holds_the_sample_events_and_hits(samples, tmp_path, monkeypatch):
    cache = EventCache(tmp_path / "events")
    s = samples[0]
    stored = cache.sample_events(s, lead_us=5_000)
    events, _ = read_events(s.path, s.start_us - 5_000, s.end_us)
    np.testing.assert_array_equal(stored, events)
    reads = []
    real_read = augmented_module.read_window
    monkeypatch.setattr(augmented_module, "read_window", lambda *a: reads.append(a) or real_read(*a))
    again = cache.sample_events(s, lead_us=5_000)
    np.testing.assert_array_equal(again, events)
    assert reads == [] and (cache.misses, cache.hits) == (1, 1)
    dataset = AugmentedFrameDataset(samples, SMALL, RECOMMENDED, cache=cache)
    for epoch in range(2):
        dataset.set_epoch(epoch)
        for i in range(len(samples)):
            dataset[i]
    assert len(reads) == len(samples)  # one read per sample (lead 0), whatever the epochs
    assert not [p for p in (tmp_path / "events").iterdir() if p.name.startswith(".")]  # no temporaries left
    assert len({cache.key(s, lead) for lead in (0, 5_000)}) == 2
    stat = os.stat(s.path)
    before = cache.key(s)
    os.utime(s.path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000))
    try:
        assert cache.key(s) != before
    finally:
        os.utime(s.path, ns=(stat.st_atime_ns, stat.st_mtime_ns))


def test_training_set_follows_the_spec(samples, tmp_path):
    frames = FrameCache(tmp_path / "cache")
    off = training_set(samples, SMALL, "", 0, frames)
    assert type(off) is FrameDataset and off.cache is frames
    on = training_set(samples, SMALL, "noise=0.5", 0, frames)
    assert isinstance(on, AugmentedFrameDataset) and on.event_cache.root == tmp_path / "cache" / "events"
    first, fifth = samples[0], samples[4]  # gestures 2-4 between them: a stretch of some 2 s with no label
    with_stretches = training_set([first, fifth], SMALL, "noise=0.5", 0, frames, no_gesture=True)
    assert with_stretches.samples == [first, fifth, Sample(first.path, NO_GESTURE, first.end_us + 200_000, fifth.start_us - 200_000, first.subject)]
    assert training_set(samples, SMALL, "", 0, frames, no_gesture=True).samples == samples  # the tiny set's gaps are 0.1-0.2 s


def test_config_augment_field_and_preset():
    assert TrainConfig().augment == ""
    assert load_config(preset="gesture-cpu-sim2real").augment == RECOMMENDED
    small, sim2real = load_config(preset="gesture-cpu-small"), load_config(preset="gesture-cpu-sim2real")
    assert sim2real.no_gesture and not small.no_gesture
    assert sim2real.time_reversal == 0.5 and small.time_reversal == 0.0
    assert sim2real.ema == 0.995 and small.ema == 0.0
    assert replace(sim2real, augment="", no_gesture=False, time_reversal=0.0, ema=0.0) == small  # the same recipe otherwise
    assert load_config(preset="gesture-cpu-sim2real", overrides={"augment": ""}).augment == ""
    with pytest.raises(ValueError, match="unknown augmentation 'flip'"):
        TrainConfig(augment="flip=1")


def test_train_augment_flag_reaches_the_checkpoint(gesture_root, tmp_path):
    out = tmp_path / "run"
    run = subprocess.run(
        [sys.executable, "-m", "masnn", "train", "--data", str(gesture_root), "--preset", "gesture-cpu-sim2real",
         "--augment", "noise=0.5,drop=0.3", "--time-reversal", "0.25", "--ema", "0.9", "--amp", "--epochs", "1", "--batch-size", "8", "--out", str(out),
         "--device", "cpu",
         "--cache", str(tmp_path / "cache")], capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr
    assert ("training crops augmented: noise=0.5,drop=0.3; 25% of them played backwards; the weights' moving average "
            "(decay 0.9 per step) validated and kept; the synapses under bfloat16 autocast") in run.stdout
    from masnn.checkpoint import load_checkpoint

    config = load_checkpoint(out / "last.pt")["config"]
    assert config["augment"] == "noise=0.5,drop=0.3" and config["time_reversal"] == 0.25 and config["ema"] == 0.9 and config["amp"] is True
    assert any((tmp_path / "cache" / "events").glob("*.npy"))
    refused = subprocess.run([sys.executable, "-m", "masnn", "train", "--data", str(gesture_root), "--augment", "flip=1"],
                             capture_output=True, text=True, timeout=300)
    assert refused.returncode == 2 and refused.stderr.startswith("error: --augment: unknown augmentation 'flip'")


def test_time_reversed_labels_swap_only_the_arm_circles_senses():
    swaps = time_reversed_labels(GESTURE_CLASSES)
    named = {GESTURE_CLASSES[a]: GESTURE_CLASSES[b] for a, b in swaps.items()}
    assert named == {"right arm clockwise": "right arm counter-clockwise", "right arm counter-clockwise": "right arm clockwise",
                     "left arm clockwise": "left arm counter-clockwise", "left arm counter-clockwise": "left arm clockwise"}
    assert time_reversed_labels([f"subject {i}" for i in range(20)]) == {}  # gait: a walker stays a walker
    assert time_reversed_labels(["clockwise", "left arm clockwise"]) == {}  # no twin, no swap


def test_reversed_crops_are_the_frames_mirrored_in_time_with_polarities_and_circles_swapped(gesture_root):
    by_label = {}
    for sample in gesture_samples(gesture_root, "train"):
        by_label.setdefault(sample.label, sample)
    chosen = [by_label[label] for label in (0, 3, 4, 5)]  # a clap, right arm CW and CCW, left arm CW
    plain = AugmentedFrameDataset(chosen, SMALL, "identity", seed=5)
    backwards = AugmentedFrameDataset(chosen, SMALL, "identity", seed=5, time_reversal=1.0,
                                      reversed_labels=time_reversed_labels(GESTURE_CLASSES))
    for i, expected_label in enumerate((0, 4, 3, 6)):
        frames, label = plain[i]
        reversed_frames, reversed_label = backwards[i]
        assert label == chosen[i].label and reversed_label == expected_label
        # 10 ms bins over a 200 ms window: bin k holds what bin T-1-k held, ON and OFF exchanged
        assert frames.sum() > 0 and torch.equal(reversed_frames, frames.flip(0).flip(1))


def test_time_reversal_share_is_drawn_per_seed_epoch_index(samples):
    labels = time_reversed_labels(GESTURE_CLASSES)
    half = AugmentedFrameDataset(samples * 8, SMALL, "identity", seed=2, time_reversal=0.5, reversed_labels=labels)
    plain = AugmentedFrameDataset(samples * 8, SMALL, "identity", seed=2)
    flipped = [not torch.equal(half[i][0], plain[i][0]) for i in range(len(half))]
    assert 8 <= sum(flipped) <= 32  # about half of 40
    again = AugmentedFrameDataset(samples * 8, SMALL, "identity", seed=2, time_reversal=0.5, reversed_labels=labels)
    assert [not torch.equal(again[i][0], plain[i][0]) for i in reversed(range(len(half)))][::-1] == flipped
    with pytest.raises(ValueError, match="time_reversal"):
        AugmentedFrameDataset(samples, SMALL, "identity", time_reversal=1.5)


def test_time_reversal_in_config_training_set_and_card():
    assert TrainConfig().time_reversal == 0.0
    with pytest.raises(ValueError, match="time_reversal"):
        TrainConfig(time_reversal=-0.1)
    assert load_config(preset="gesture-cpu-small", overrides={"time_reversal": 0.5}).time_reversal == 0.5
    config = dataclasses.asdict(load_config(preset="gesture-cpu-small", overrides={"time_reversal": 0.5}))
    card = training_block({"config": config, "best": 0.1}, history=[])
    assert "crops; 50% of the crops played backwards, the arm circles' senses swapped" in card
    assert "backwards" not in training_block({"config": {**config, "time_reversal": 0.0}, "best": 0.1}, history=[])


def test_the_weight_average_in_the_card():
    config = dataclasses.asdict(load_config(preset="gesture-cpu-small", overrides={"ema": 0.995}))
    card = training_block({"config": config, "best": 0.1}, history=[])
    assert "crops; the model is the moving average of the weights (decay 0.995 per step)" in card
    assert "moving average" not in training_block({"config": {**config, "ema": 0.0}, "best": 0.1}, history=[])
