"""The "uncertain" answer: the threshold rule on hand-made confidences, the calibration file beside the
checkpoint, clips and timelines below the threshold, and the shipped model on a real recording of no gesture."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from masnn.calibration import UNCERTAIN, calibration_path, load_calibration, threshold_for
from masnn.classify import Classifier, ClassifyOptions, classify_recording, segments
from masnn.datasets.synth.generator import write_action_clip
from masnn.report import classify_tables


def test_the_threshold_keeps_95_percent_of_the_correct_windows():
    correct_confidences = np.arange(1, 21) / 20  # 0.05 .. 1.00: one of the 20 may fall below
    wrong = np.array([0.99, 0.98, 0.01])  # wrong windows do not move it
    confidences = np.concatenate([correct_confidences, wrong])
    correct = np.array([True] * 20 + [False] * 3)
    assert threshold_for(confidences, correct) == pytest.approx(0.10)
    assert threshold_for(confidences, correct, 0.5) == pytest.approx(0.55)  # 10 of 20 below
    assert threshold_for(confidences, correct, 1.0) == pytest.approx(0.05)  # all kept
    kept = (correct_confidences >= threshold_for(confidences, correct)).mean()
    assert kept >= 0.95
    with pytest.raises(ValueError):
        threshold_for([0.5], [False])


def test_the_calibration_file_sits_beside_the_checkpoint(tmp_path):
    weights = tmp_path / "model.pt"
    assert calibration_path(weights) == tmp_path / "model.calibration.json"
    assert load_calibration(weights) is None
    calibration_path(weights).write_text(json.dumps({"threshold": 1.5}))
    with pytest.raises(ValueError, match="threshold"):
        load_calibration(weights)


@pytest.fixture(scope="module")
def short_clip(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("clips") / "wave.aedat4"
    write_action_clip(path, "right hand wave", "dvs128", 4, 1.5, "lab")
    return path


def _classifier(checkpoint, threshold):
    classifier = Classifier.load(checkpoint)
    classifier.calibration = None if threshold is None else {"threshold": threshold, "rule": "test rule", "data": "test data"}
    return classifier


def test_a_clip_below_the_threshold_is_uncertain(short_clip, untrained_checkpoint):
    import jsonschema
    from test_classify import schema

    report = classify_recording(short_clip, _classifier(untrained_checkpoint, 1.0), ClassifyOptions(min_events=0))
    jsonschema.validate(report, schema())
    assert report["prediction"]["class"] == UNCERTAIN and report["model"]["uncertain_threshold"] == 1.0
    assert report["model"]["uncertain_rule"] == "test rule"
    assert all(w["class"] == UNCERTAIN for w in report["windows"])
    assert all(len(w["top_k"]) == 3 for w in report["windows"])  # the guesses are kept
    top = report["prediction"]["top_k"][0]
    text = "\n".join(str(getattr(r, "plain", "")) for r in classify_tables(report))
    assert f"uncertain (top guess: {top['class']}, {100 * top['probability']:.0f} %)" in text


def test_no_calibration_means_no_threshold(short_clip, untrained_checkpoint):
    report = classify_recording(short_clip, _classifier(untrained_checkpoint, None), ClassifyOptions(min_events=0))
    assert report["model"]["uncertain_threshold"] is None
    assert report["prediction"]["class"] == report["prediction"]["top_k"][0]["class"]
    assert all(w["class"] != UNCERTAIN for w in report["windows"])


def _windows(confidences, classes=3):
    out = []
    for i, top in enumerate(confidences):
        p = np.full(classes, (1 - top) / (classes - 1))
        p[1] = top
        out.append({"probabilities": p.tolist(), "idle": False, "start_s": 0.45 * i, "end_s": 0.45 * i + 0.9})
    return out


def test_a_timeline_merges_uncertain_windows_into_uncertain_segments():
    windows = _windows([0.9] * 4 + [0.4] * 5 + [0.9] * 4)
    got = segments(windows, ["a", "b", "c"], smoothing=1, min_windows=2, threshold=0.6)
    assert [(s["class"], s["windows"], s["top_guess"]) for s in got] == [("b", 4, "b"), (UNCERTAIN, 5, "b"), ("b", 4, "b")]
    assert got[1]["index"] is None and got[1]["confidence"] == pytest.approx(0.4)
    assert [s["class"] for s in segments(windows, ["a", "b", "c"], smoothing=1, min_windows=2)] == ["b"]  # no threshold


@pytest.mark.parametrize("pattern", [[0, 0, 1, 1, 1, 2, 2], [0] * 9, [0, 1] * 6 + [2, 2, 2]])
def test_segments_tile_the_windows_without_overlap(pattern):
    windows = []
    for i, label in enumerate(pattern):
        p = np.full(3, 0.05)
        p[label] = 0.9
        windows.append({"probabilities": p.tolist(), "idle": False, "start_s": 0.45 * i, "end_s": 0.45 * i + 0.9})
    got = segments(windows, ["a", "b", "c"], smoothing=1, min_windows=2)
    assert got[0]["start_s"] == windows[0]["start_s"] and got[-1]["end_s"] == windows[-1]["end_s"]
    for before, after in zip(got, got[1:]):
        assert before["end_s"] == after["start_s"]  # no overlap, no gap
    for segment in got:
        assert segment["end_s"] > segment["start_s"]
    assert sum(s["windows"] for s in got) == len(windows)


def test_the_shipped_models_carry_their_calibration():
    for name in ("gesture-tcsa", "gesture-vanilla"):
        classifier = Classifier.load(name, "cpu")
        assert classifier.calibration is not None, name
        assert 0 < classifier.uncertain_threshold < 1
        assert "95" in classifier.calibration["rule"] and "users" in classifier.calibration["data"]


@pytest.mark.xfail(strict=True, reason="the default fine-tuned on the data of commit 2bb256e (10 ms filter in front), "
                   "scored both ways, calls 14 of 45 windows uncertain and 31 hand clap (the default before it: 22 of "
                   "45); the other standing-up recording: 10 of 29")
def test_a_person_standing_up_is_mostly_uncertain(real_data):
    path = real_data / "dvs128_aedat2" / "cam255_alex_standing_up.aedat"
    if not path.exists():
        pytest.skip(f"{path} not found")
    report = classify_recording(path, Classifier.load(None, "cpu"), ClassifyOptions())
    windows = [w for w in report["windows"] if not w["idle"]]
    uncertain = sum(w["class"] == UNCERTAIN for w in windows) / len(windows)
    assert uncertain > 0.5, f"only {uncertain:.0%} of the windows of a recording with no gesture are uncertain"
    assert report["recording"]["duration_s"] == pytest.approx(25.09, abs=0.01)  # AEDAT 2.0: measured


def test_a_recording_shorter_than_a_window_says_it_was_padded(tmp_path, untrained_checkpoint):
    import subprocess
    import sys

    path = tmp_path / "short.aedat4"
    write_action_clip(path, "hand clap", "davis346", 1, 0.3, "lab")
    run = [sys.executable, "-m", "masnn", "classify", str(path), "--weights", str(untrained_checkpoint)]
    text = subprocess.run(run, capture_output=True, text=True, timeout=300, env={**__import__("os").environ, "COLUMNS": "200"})
    assert text.returncode == 0, text.stderr
    assert "is shorter than one window (0.90 s): padded with empty frames" in text.stdout
    report = json.loads(subprocess.run(run + ["--json"], capture_output=True, text=True, timeout=300).stdout)
    assert report["windows"][0]["padded"] and any("padded with empty frames" in note for note in report["notes"])
