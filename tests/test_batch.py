"""`masnn classify A B FOLDER/`: one row per recording, in order, an error row for a bad file (exit 2); CSV and
JSONL rows that parse back; folders give their recordings only; --start/--end against a numpy count."""
from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from masnn.batch import COLUMNS, find_recordings, main_action, summary_row
from masnn.classify import Classifier, ClassifyOptions, classify_recording
from masnn.datasets.io.readers import read_events
from masnn.datasets.synth.generator import write_action_clip

WINDOW = "450"  # ms: T = 20 frames of 22.5 ms; short clips make few windows


def masnn(*args, cwd=None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "masnn", *map(str, args)], capture_output=True, text=True, timeout=300, cwd=cwd)


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    """a.aedat4, b.aedat4, bad.aedat4 (not a recording) and sub/ holding c.aedat4, notes.txt, c_labels.csv, deeper/."""
    root = tmp_path_factory.mktemp("batch")
    write_action_clip(root / "a.aedat4", "air guitar", "dvs128", 1, 1.0, "lab")
    write_action_clip(root / "b.aedat4", "hand clap", "dvs128", 2, 1.0, "lab")
    (root / "bad.aedat4").write_text("these are not events\n")
    sub = root / "sub"
    (sub / "deeper").mkdir(parents=True)
    write_action_clip(sub / "c.aedat4", "arm roll", "dvs128", 3, 1.0, "lab")
    write_action_clip(sub / "deeper" / "d.aedat4", "arm roll", "dvs128", 4, 1.0, "lab")
    (sub / "notes.txt").write_text("recorded on monday\nlights on\n")
    (sub / "c_labels.csv").write_text("class,startTime_usec,endTime_usec\n1,0,10\n")
    return root


@pytest.fixture(scope="module")
def runs(folder, untrained_checkpoint) -> dict:
    """The same four paths classified to JSON lines on stdout and to a CSV file."""
    args = ["a.aedat4", "bad.aedat4", "sub", "b.aedat4", "--weights", untrained_checkpoint, "--window", WINDOW, "--device", "cpu"]
    jsonl = masnn("classify", *args, "--format", "jsonl", cwd=folder)
    out = folder / "rows.csv"
    written = masnn("classify", *args, "--format", "csv", "--out", out, cwd=folder)
    return {"jsonl": jsonl, "csv": written, "csv_file": out}


def test_a_folder_gives_the_recordings_directly_inside_it(folder):
    assert find_recordings([folder / "sub"]) == [folder / "sub" / "c.aedat4"]
    assert find_recordings([folder / "b.aedat4", folder]) == [folder / "b.aedat4", folder / "a.aedat4", folder / "b.aedat4"]
    assert find_recordings([folder / "missing.aedat4"]) == [folder / "missing.aedat4"]  # named files are kept: their row says why


def test_one_row_per_file_in_order_with_an_error_row(runs, folder, untrained_checkpoint):
    result = runs["jsonl"]
    assert result.returncode == 2, result.stderr
    rows = [json.loads(line) for line in result.stdout.splitlines()]
    assert [r["file"] for r in rows] == ["a.aedat4", "bad.aedat4", "sub/c.aedat4", "b.aedat4"]
    assert all(list(r) == list(COLUMNS) for r in rows)
    assert [r["error"] is None for r in rows] == [True, False, True, True]
    assert rows[1]["error"].startswith("bad.aedat4: unknown or unsupported event format")
    assert rows[1]["events_in_windows"] is None and rows[1]["mode"] is None
    assert result.stderr.strip().splitlines()[-1] == "1 of 4 recordings failed: bad.aedat4"
    # the good rows are what the Python API makes of each file on its own
    classifier = Classifier.load(untrained_checkpoint, "cpu", window_ms=float(WINDOW))
    expected = summary_row(classify_recording(folder / "sub" / "c.aedat4", classifier, ClassifyOptions()))
    for key in ("mode", "action", "segments", "events_in_windows", "spikes", "duration_s"):
        assert rows[2][key] == pytest.approx(expected[key]), key
    assert rows[2]["mode"] == "clip" and rows[2]["events_in_windows"] > 0


def test_csv_rows_parse_back_to_the_jsonl_rows(runs):
    assert runs["csv"].returncode == 2, runs["csv"].stderr
    assert runs["csv"].stdout.startswith("4 rows -> ")
    with open(runs["csv_file"], newline="") as f:
        table = list(csv.DictReader(f))
    rows = [json.loads(line) for line in runs["jsonl"].stdout.splitlines()]
    assert len(table) == len(rows) == 4
    for got, want in zip(table, rows):
        assert list(got) == list(COLUMNS)
        for key in ("file", "mode", "action", "error"):
            assert got[key] == ("" if want[key] is None else want[key]), key
        for key in ("duration_s", "confidence", "events_in_windows", "spikes", "energy_uj"):
            if want[key] is None:
                assert got[key] == ""
            else:
                assert float(got[key]) == pytest.approx(want[key]), key


def test_start_and_end_classify_that_span_only(folder, untrained_checkpoint):
    path = folder / "a.aedat4"
    result = masnn("classify", path, "--weights", untrained_checkpoint, "--window", WINDOW, "--stride", WINDOW,
                   "--start", "0.2", "--end", "0.65", "--json", "--device", "cpu")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    events, _ = read_events(path)
    t = events["t"].astype(np.int64) - int(events["t"][0])
    inside = int(np.count_nonzero((t >= 200_000) & (t < 650_000)))  # the one window: [0.2, 0.65) s
    assert [(w["start_s"], w["end_s"]) for w in report["windows"]] == [(0.2, 0.65)]
    assert report["totals"]["events_in_windows"] == inside > 0
    whole = json.loads(masnn("classify", path, "--weights", untrained_checkpoint, "--window", WINDOW, "--stride", WINDOW,
                             "--json", "--device", "cpu").stdout)
    assert whole["totals"]["events_in_windows"] > inside


def test_start_and_end_are_checked():
    with pytest.raises(ValueError, match="--end: must come after --start"):
        ClassifyOptions(start_s=2.0, end_s=1.0)
    with pytest.raises(ValueError, match="--start"):
        ClassifyOptions(start_s=float("nan"))


def test_main_action_is_the_class_with_most_time():
    segments = [{"class": "a", "start_s": 0.0, "end_s": 1.0, "confidence": 0.5},
                {"class": "idle", "start_s": 1.0, "end_s": 9.0, "confidence": None},
                {"class": "b", "start_s": 9.0, "end_s": 10.5, "confidence": 0.8},
                {"class": "a", "start_s": 10.5, "end_s": 11.5, "confidence": 0.9},
                {"class": "uncertain", "start_s": 11.5, "end_s": 20.0, "confidence": 0.2}]
    name, confidence = main_action(segments)
    assert name == "a" and confidence == pytest.approx(0.7)
    assert main_action(segments[1:2]) == (None, None)
