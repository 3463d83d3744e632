"""`masnn classify TRIAL --labels TRIAL_labels.csv`: scoring a timeline against labelled segments, by hand on a
made-up timeline, and end to end on a synthetic DVS128 Gesture trial (11 gestures back to back)."""
from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import jsonschema
import pytest
from rich.console import Console

from masnn.datasets.io.readers import read_events
from masnn.datasets.synth.generator import GESTURE_PRESETS, write_gesture_dataset
from masnn.labels import labelled_segments, labels_tables, predicted_class, score


def masnn(*args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "masnn", *map(str, args)], capture_output=True, text=True, timeout=300)


def schema() -> dict:
    from importlib import resources

    return json.loads(resources.files("masnn").joinpath("classify_schema.json").read_text())


def _seg(name, start, end):
    return {"class": name, "start_s": start, "end_s": end}


TIMELINE = [_seg("a", 0.0, 2.0), _seg("idle", 2.0, 3.0), _seg("b", 3.0, 6.0)]
WINDOWS = [{"start_s": 7.0, "end_s": 8.0, "idle": False, "top_k": [{"class": "c"}]},  # centre 7.5
           {"start_s": 7.2, "end_s": 8.0, "idle": False, "top_k": [{"class": "c"}]},  # centre 7.6
           {"start_s": 7.0, "end_s": 7.8, "idle": True, "top_k": [{"class": "a"}]}]  # centre 7.4: idle


def test_scores_a_hand_made_timeline():
    truth = [_seg("a", 0.5, 1.5),  # inside a: a, right
             _seg("b", 2.5, 4.0),  # idle 0.5 s, b 1.0 s: b, right
             _seg("a", 4.0, 5.0),  # inside b: b, wrong
             _seg("c", 7.0, 8.0),  # no segment: windows c, c, idle -> c, right
             _seg("c", 10.0, 11.0)]  # nothing at all: None, wrong
    block = score(truth, TIMELINE, WINDOWS, class_names=["c", "b", "a", "unlabelled"])
    assert [s["predicted"] for s in block["segments"]] == ["a", "b", "b", "c", None]
    assert [s["correct"] for s in block["segments"]] == [True, True, False, True, False]
    assert block["per_class"] == [{"class": "c", "segments": 2, "correct": 1, "accuracy": 0.5},
                                  {"class": "b", "segments": 1, "correct": 1, "accuracy": 1.0},
                                  {"class": "a", "segments": 2, "correct": 1, "accuracy": 0.5}]
    assert (block["correct"], block["total"], block["accuracy"]) == (3, 5, 0.6)


def test_idle_can_win_and_ties_go_to_the_earlier_class():
    assert predicted_class(_seg("a", 1.5, 3.0), TIMELINE) == "idle"  # a 0.5 s, idle 1.0 s
    assert predicted_class(_seg("a", 1.0, 3.0), TIMELINE) == "a"  # a 1.0 s, idle 1.0 s: a comes first
    assert predicted_class(_seg("a", 2.0, 4.0), TIMELINE) == "idle"


def test_labels_move_to_seconds_after_the_first_event(tmp_path):
    labels = tmp_path / "trial_labels.csv"
    labels.write_text("class,startTime_usec,endTime_usec\n3,1500000,2500000\n1,3000000,3200000\n")
    got = labelled_segments(labels, 1_000_000, 4_000_000, ["a", "b", "c"])
    assert got == [{"class": "c", "index": 2, "start_s": 0.5, "end_s": 1.5}, {"class": "a", "index": 0, "start_s": 2.0, "end_s": 2.2}]
    with pytest.raises(ValueError, match=r"trial_labels.csv: line 3: segment 3000000-3200000 us lies outside the recording"):
        labelled_segments(labels, 1_000_000, 2_900_000, ["a", "b", "c"])
    with pytest.raises(ValueError, match="trial_labels.csv: line 2: class 3, but the model has 2 classes"):
        labelled_segments(labels, 1_000_000, 4_000_000, ["a", "b"])


@pytest.fixture(scope="module")
def trial(tmp_path_factory) -> tuple[Path, Path]:
    """A synthetic DVS128 Gesture trial (AEDAT 3.1): the 11 gestures back to back, 0.6-0.8 s each, and its labels CSV."""
    out = tmp_path_factory.mktemp("gesture")
    write_gesture_dataset(out, users=1, seed=3, preset=GESTURE_PRESETS["tiny"], workers=1)
    folder = out / "DvsGesture"
    return folder / "user01_lab.aedat", folder / "user01_lab_labels.csv"


def test_a_trial_is_scored_against_its_labels(trial, untrained_checkpoint):
    recording, labels = trial
    result = masnn("classify", recording, "--labels", labels, "--weights", untrained_checkpoint, "--window", "450",
                   "--stride", "450", "--json", "--device", "cpu")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    jsonschema.validate(report, schema())
    assert report["mode"] == "timeline"  # forced: a labelled trial is scored as a timeline
    block = report["labels"]
    with open(labels, newline="") as f:
        rows = [(int(r["class"]) - 1, int(r["startTime_usec"]), int(r["endTime_usec"])) for r in csv.DictReader(f)]
    first = int(read_events(recording)[0]["t"][0])
    names = report["model"]["classes"]
    assert len(block["segments"]) == len(rows) == 11
    for segment, (index, start, end) in zip(block["segments"], rows):
        assert (segment["class"], segment["index"]) == (names[index], index)
        assert segment["start_s"] == pytest.approx((start - first) / 1e6) and segment["end_s"] == pytest.approx((end - first) / 1e6)
        assert segment["correct"] == (segment["predicted"] == segment["class"])
    assert [c["class"] for c in block["per_class"]] == names and all(c["segments"] == 1 for c in block["per_class"])
    assert block["total"] == 11 and block["correct"] == sum(s["correct"] for s in block["segments"])
    # the printed tables: one row per labelled segment, with its true class and a tick or a cross
    console = Console(record=True, width=200)
    for renderable in labels_tables(block):
        console.print(renderable)
    text = console.export_text()
    assert text.count("✓") + text.count("✗") == 11
    assert all(name in text for name in names)
    assert f"accuracy: {block['correct']}/11 labelled segments" in text


def test_labels_of_another_recording_are_one_error_line(trial, untrained_checkpoint, tmp_path):
    recording, _ = trial
    wrong = tmp_path / "other_labels.csv"
    wrong.write_text("class,startTime_usec,endTime_usec\n1,900000000000,900001000000\n")
    result = masnn("classify", recording, "--labels", wrong, "--weights", untrained_checkpoint, "--device", "cpu")
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: {wrong}: line 2: segment") and "outside the recording" in lines[0], result.stderr
