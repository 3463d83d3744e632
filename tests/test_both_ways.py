"""Scoring windows both ways: the backwards frames are those of the events played backwards, the answer is the
average of two plain passes with the circles' senses swapped back, and the accounting counts both passes."""
import json
import subprocess
import sys

import numpy as np
import pytest
import torch

from masnn.checkpoint import load_checkpoint, save_checkpoint
from masnn.datasets.events import EVENT_DTYPE
from masnn.datasets.loaders.table import GESTURE_CLASSES
from masnn.datasets.transforms.pipeline import FramingConfig, frame_events
from masnn.models.accounting import account
from masnn.models.both_ways import BothWays, played_backwards
from masnn.models.networks import NetTrace

# the gesture classes played backwards, written out: the clockwise and counter-clockwise circles of each arm swap
BACKWARDS = [0, 1, 2, 4, 3, 6, 5, 7, 8, 9, 10]


@pytest.fixture(scope="module")
def both_ways_checkpoint(untrained_checkpoint, tmp_path_factory):
    """The untrained gesture checkpoint, marked as trained with half its crops played backwards."""
    checkpoint = load_checkpoint(untrained_checkpoint)
    checkpoint["config"]["time_reversal"] = 0.5
    path = tmp_path_factory.mktemp("both") / "backwards-trained.pt"
    save_checkpoint(checkpoint, path)
    return path


def random_events(n=4000, seed=0, start=1_000, span=900_000):
    rng = np.random.default_rng(seed)
    events = np.zeros(n, EVENT_DTYPE)
    events["t"] = np.sort(rng.integers(start, start + span, n))
    events["x"], events["y"], events["p"] = rng.integers(0, 128, n), rng.integers(0, 128, n), rng.integers(0, 2, n)
    return events


def test_frames_played_backwards_are_the_frames_of_the_events_played_backwards():
    framing = FramingConfig(dt_us=45_000, n_frames=20, size=32)
    start, span = 1_000, 20 * 45_000
    events = random_events(start=start, span=span)
    backwards = events[::-1].copy()
    backwards["t"] = 2 * start + span - 1 - events["t"][::-1]  # [start, start + span) onto itself, bin k onto 19 - k
    backwards["p"] = 1 - backwards["p"]
    forwards = torch.from_numpy(frame_events(events, (128, 128), framing, start, 20).astype(np.float32))
    expected = frame_events(backwards, (128, 128), framing, start, 20)
    assert forwards.sum() == len(events)
    np.testing.assert_array_equal(played_backwards(forwards).numpy(), expected)


class Recorder(torch.nn.Module):
    """Rates that depend on the order and content of the frames: a weighted sum over time per class."""

    def __init__(self, classes=11, steps=20):
        super().__init__()
        generator = torch.Generator().manual_seed(3)
        self.weights = torch.randn(steps, 2, classes, generator=generator)

    def forward(self, x, record=False):
        rates = torch.einsum("tbchw,tck->bk", x, self.weights).sigmoid()
        return (rates, NetTrace([], x.shape[0])) if record else rates


def test_both_ways_is_the_mean_of_two_plain_passes_with_the_senses_swapped_back():
    network = Recorder()
    x = torch.rand(20, 3, 2, 8, 8)
    forwards = network(x)
    backwards = network(x.flip(0)[:, :, [1, 0]])  # frames reversed, OFF and ON swapped, by hand
    expected = torch.stack([(forwards[:, c] + backwards[:, BACKWARDS[c]]) / 2 for c in range(11)], 1)
    torch.testing.assert_close(BothWays(network, BACKWARDS)(x), expected)
    rates, trace = BothWays(network, BACKWARDS)(x, record=True)
    torch.testing.assert_close(rates, expected)


def test_a_window_played_backwards_gets_the_reversed_answer():
    both = BothWays(Recorder(), BACKWARDS)
    x = torch.rand(20, 2, 2, 8, 8)
    torch.testing.assert_close(both(played_backwards(x)), both(x)[:, BACKWARDS])


def test_accounting_counts_both_passes_and_keeps_one_passs_rates(untrained_checkpoint):
    from masnn.checkpoint import build_model
    from masnn.models.inference import prepare_for_inference

    network = prepare_for_inference(build_model(load_checkpoint(untrained_checkpoint)))
    events = random_events(n=30_000, seed=1)
    x = torch.from_numpy(frame_events(events, (128, 128), FramingConfig(dt_us=45_000, n_frames=20, size=32), 1_000, 20)).float()[:, None]
    with torch.inference_mode():
        one = account(network(x, record=True)[1])
        other = account(network(played_backwards(x), record=True)[1])
        both = account(BothWays(network, BACKWARDS)(x, record=True)[1])
    assert one.spikes != other.spikes  # the two passes differ: a sum is not a doubling
    assert both.spikes == pytest.approx(one.spikes + other.spikes)
    assert both.energy_pj == pytest.approx(one.energy_pj + other.energy_pj)
    assert both.sops == pytest.approx(one.sops + other.sops)
    assert both.nasar == pytest.approx((one.nasar + other.nasar) / 2)
    assert both.ann_frame_by_frame_energy_pj == pytest.approx(2 * one.ann_frame_by_frame_energy_pj)
    assert both.batch == 1


def test_classifier_scores_both_ways_when_the_model_was_trained_on_crops_played_backwards(untrained_checkpoint, both_ways_checkpoint):
    from masnn.classify import Classifier

    assert not Classifier.load(untrained_checkpoint, "cpu").both_ways
    assert Classifier.load(untrained_checkpoint, "cpu", both_ways=True).both_ways
    trained_backwards = Classifier.load(both_ways_checkpoint, "cpu")
    assert trained_backwards.both_ways and not Classifier.load(both_ways_checkpoint, "cpu", both_ways=False).both_ways
    frames = frame_events(random_events(n=20_000, seed=2), (128, 128), trained_backwards.framing, 1_000, 20)
    answer = np.array(trained_backwards(frames)["probabilities"])
    reversed_answer = np.array(trained_backwards(np.ascontiguousarray(frames[::-1, ::-1]))["probabilities"])
    np.testing.assert_allclose(reversed_answer, answer[BACKWARDS], atol=1e-6)


def test_gait_models_have_nothing_to_swap_and_score_one_way(untrained_checkpoint, tmp_path):
    from masnn.checkpoint import scores_both_ways

    checkpoint = load_checkpoint(untrained_checkpoint)
    checkpoint["config"]["time_reversal"] = 0.5
    checkpoint["config"]["class_names"] = [f"subject {i:02d}" for i in range(1, 12)]
    assert not scores_both_ways(checkpoint)
    checkpoint["config"]["class_names"] = list(GESTURE_CLASSES)
    assert scores_both_ways(checkpoint)


def test_a_calibration_made_the_other_way_does_not_apply(both_ways_checkpoint):
    from masnn.calibration import calibration_path
    from masnn.classify import Classifier

    path = calibration_path(both_ways_checkpoint)
    try:
        path.write_text(json.dumps({"threshold": 0.3, "both_ways": True, "rule": "r", "data": "d"}))
        assert Classifier.load(both_ways_checkpoint, "cpu").uncertain_threshold == 0.3
        assert Classifier.load(both_ways_checkpoint, "cpu", both_ways=False).uncertain_threshold is None
        path.write_text(json.dumps({"threshold": 0.3, "rule": "r", "data": "d"}))  # made one way (before both ways)
        assert Classifier.load(both_ways_checkpoint, "cpu").uncertain_threshold is None
    finally:
        path.unlink()


def test_classify_says_how_it_scored_and_one_way_halves_the_spikes_it_counts(both_ways_checkpoint, live_clip):
    def run(*flags):
        out = subprocess.run([sys.executable, "-m", "masnn", "classify", str(live_clip[0]), "--weights", str(both_ways_checkpoint),
                              "--json", "--device", "cpu", *flags], capture_output=True, text=True, check=True).stdout
        return json.loads(out)

    both, one = run(), run("--one-way")
    assert both["model"]["both_ways"] and not one["model"]["both_ways"]
    first_both, first_one = both["windows"][0]["stats"], one["windows"][0]["stats"]
    assert first_both["spikes"] > first_one["spikes"]
    assert first_both["energy_uj"] > 1.5 * first_one["energy_uj"]


def test_the_live_summary_says_how_windows_were_scored(both_ways_checkpoint, live_clip):
    from masnn.classify import Classifier
    from masnn.live.pipeline import LiveOptions, LivePipeline
    from masnn.live.sources import replay_source

    for both in (True, False):
        classifier = Classifier.load(both_ways_checkpoint, "cpu", window_ms=450, both_ways=both)
        summary = LivePipeline(replay_source(live_clip[0], speed=0), classifier, LiveOptions(stride_ms=450)).run()
        assert summary["predictions"] >= 1 and summary["model"]["both_ways"] is both
