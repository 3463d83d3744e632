"""The table of datasets (masnn.datasets.loaders.table) drives the CLI: every dataset it lists is accepted and
reaches its own loader, an unknown one is refused in one line, and each entry names its classes."""
from __future__ import annotations

import os
import subprocess
import sys
from types import SimpleNamespace

import pytest

from masnn.datasets.loaders.table import DATASETS, GESTURE_CLASSES, find_dataset


def masnn(*args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "masnn", *args], capture_output=True, text=True, timeout=120)


def test_the_table_lists_the_three_datasets_the_cli_offers():
    assert list(DATASETS) == ["gesture", "tonic-gesture", "gait"]
    assert all(spec.sensor_size == (128, 128) for spec in DATASETS.values())
    result = subprocess.run([sys.executable, "-m", "masnn", "train", "--help"], capture_output=True, text=True,
                            timeout=120, env={**os.environ, "COLUMNS": "250"})  # wide: one line per option
    assert result.returncode == 0, result.stderr
    words = " ".join(result.stdout.replace("│", " ").split())
    assert "--dataset <gesture|tonic-gesture|gait> gesture, tonic-gesture or gait." in words


@pytest.mark.parametrize("dataset, problem", [
    ("gesture", "no DVS128 Gesture dataset at {root}"),
    ("tonic-gesture", "no tonic DVSGesture test data at {root}"),
    ("gait", "no DVS128 Gait dataset at {root}"),
    ("nope", "--dataset: must be one of gesture, tonic-gesture, gait (got 'nope')"),
])
def test_evaluate_sends_each_dataset_to_its_loader_and_refuses_others(tmp_path, dataset, problem):
    root = tmp_path / "nowhere"
    result = masnn("evaluate", str(tmp_path / "best.pt"), "--data", str(root), "--dataset", dataset)
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: " + problem.format(root=root))


def test_find_dataset_refuses_an_unknown_name():
    with pytest.raises(ValueError, match="unknown dataset 'Gesture'"):
        find_dataset("Gesture")


def test_gesture_entries_name_the_eleven_gestures(tmp_path):
    for name in ("gesture", "tonic-gesture"):
        names = DATASETS[name].class_names(tmp_path)
        assert names == GESTURE_CLASSES and len(names) == 11
        assert (names[0], names[-1]) == ("hand clap", "other gestures")


def _write_walk(folder, start_us):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"walk{start_us}.txt").write_text(f"{start_us} 1 2 0\n{start_us + 50} 3 4 1\n{start_us + 90} 5 6 1\n")


def test_gait_entry_names_its_classes_after_the_train_folders(tmp_path):
    for subject in ("12", "3", "07"):
        _write_walk(tmp_path / "train" / subject, 1000)
    _write_walk(tmp_path / "test" / "3", 2000)
    gait = DATASETS["gait"]
    # string order of the folder names, as the dataset's labels are
    assert gait.class_names(tmp_path) == ["subject 07", "subject 12", "subject 3"]
    assert [(s.subject, s.label) for s in gait.samples(tmp_path, "train")] == [("07", 0), ("12", 1), ("3", 2)]
    [walk] = gait.samples(tmp_path, "test")
    assert (walk.subject, walk.label, walk.start_us, walk.end_us) == ("3", 2, 2000, 2091)


def test_gesture_validation_holds_out_the_last_users():
    samples = [SimpleNamespace(subject=f"user{u:02d}", n=n) for u in range(1, 11) for n in range(2)]
    train, validation = DATASETS["gesture"].validation_split(samples)
    assert {s.subject for s in validation} == {"user09", "user10"}
    assert len(train) == 16 and not {s.subject for s in train} & {"user09", "user10"}
    one_user = samples[:2]
    assert DATASETS["tonic-gesture"].validation_split(one_user) == (one_user, [])


def test_gait_validation_holds_out_every_fifth_walk():
    walks = [SimpleNamespace(subject=f"{i // 6:02d}", n=i) for i in range(12)]
    train, validation = DATASETS["gait"].validation_split(walks)
    assert [w.n for w in validation] == [0, 5, 10]
    assert [w.n for w in train] == [1, 2, 3, 4, 6, 7, 8, 9, 11]


def test_the_table_and_the_cli_import_without_torch():
    code = "import sys, masnn.cli, masnn.datasets.loaders.table; assert 'torch' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)
