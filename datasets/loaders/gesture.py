"""DVS128 Gesture sample indexes: IBM's original layout and tonic's preprocessed copy. Nothing is downloaded.

Original layout (root/DvsGesture or root itself): userNN_<lighting>.aedat + userNN_<lighting>_labels.csv
("class,startTime_usec,endTime_usec", class 1..11) + trials_to_train.txt / trials_to_test.txt. One sample
per labels.csv row, label = class - 1, window [startTime_usec, endTime_usec) in the recording's timebase;
a class labelled twice in one recording gives two samples (1176 train / 288 test on the real data).

Known fault, kept as is: in user22_led_labels.csv class 9's end is later than class 10's start, so the two
samples overlap by that much and share those events. The rows are used exactly as IBM published them
(as the 1176/288 counts and the authors' code do); nothing is clipped or dropped. Rows whose end is not
after their start, or whose class is outside 1..11, are refused with an error naming the file and line.

Stretches with no gesture: ``no_gesture_samples`` makes samples labelled NO_GESTURE (-1) of the unlabelled time
between a recording's labelled gestures that holds a whole window; training can use them (the config's
``no_gesture``) so that a window without a gesture reads as uncertain.

tonic's layout (<root>/DVSGesture/ibmGestureTrain|ibmGestureTest/userNN_<lighting>/<label>.npy, an (N, 4)
array of x, y, p, t in milliseconds, file name = 0-based label 0..10): one sample per file, the window
from its first event to its last (+1 us); the reader converts t to microseconds.
"""
from __future__ import annotations

import csv
import re
from collections import defaultdict
from pathlib import Path

from masnn.datasets.io.readers import open_recording
from masnn.datasets.loaders.cache import FrameCache, FrameDataset, Sample
from masnn.datasets.loaders.table import SPLITS

N_CLASSES = 11
NO_GESTURE = -1  # the label of a stretch with no gesture in it: trained towards every class being equally likely
NO_GESTURE_MARGIN_US = 200_000  # kept clear of the labelled gestures on both sides: labels are not exact to the frame
TONIC_FOLDERS = {"train": "ibmGestureTrain", "test": "ibmGestureTest"}
WHERE_TO_GET = (
    "download IBM's DvsGesture.tar.gz (https://research.ibm.com/interactive/dvsgesture/) and unpack it so "
    "that {root}/DvsGesture/trials_to_train.txt exists, or tonic's preprocessed copy from figshare "
    "(ibmGestureTrain.tar.gz: https://figshare.com/ndownloader/files/38022171, ibmGestureTest.tar.gz) "
    "unpacked into {root}/DVSGesture/ (giving {root}/DVSGesture/ibmGestureTrain/userNN_<lighting>/<label>.npy); "
    "masnn never downloads it"
)


def _check_split(split: str) -> None:
    if split not in SPLITS:
        raise ValueError(f"split must be 'train' or 'test', not {split!r}")


def gesture_folder(root: str | Path) -> Path:
    """The folder holding trials_to_train.txt: root/DvsGesture or root itself."""
    root = Path(root)
    for folder in (root / "DvsGesture", root):
        if (folder / "trials_to_train.txt").is_file():
            return folder
    raise FileNotFoundError(
        f"no DVS128 Gesture dataset at {root} (looked for {root / 'DvsGesture' / 'trials_to_train.txt'} and "
        f"{root / 'trials_to_train.txt'}): " + WHERE_TO_GET.format(root=root)
    )


def _subject(name: str) -> str:
    match = re.match(r"(user\d+)", name)
    return match.group(1) if match else name.split("_")[0]


def read_labels(path: str | Path) -> list[tuple[int, int, int]]:
    """(label 0..10, start_us, end_us) of each row of a userNN_<lighting>_labels.csv, in file order."""
    path = Path(path)
    rows = []
    with open(path, newline="") as f:
        reader = csv.reader(f)
        header = next(reader, None)
        if header is None or [h.strip() for h in header[:3]] != ["class", "startTime_usec", "endTime_usec"]:
            raise ValueError(f"{path}: header is not 'class,startTime_usec,endTime_usec' ({header})")
        for line, row in enumerate(reader, start=2):
            if not row or not "".join(row).strip():
                continue
            try:
                cls, start, end = (int(v) for v in row[:3])
            except ValueError:
                raise ValueError(f"{path}: line {line} is not three integers: {row}") from None
            if not 1 <= cls <= N_CLASSES:
                raise ValueError(f"{path}: line {line}: class {cls} is outside 1..{N_CLASSES}")
            if end <= start:
                raise ValueError(f"{path}: line {line}: end {end} is not after start {start}")
            rows.append((cls - 1, start, end))
    return rows


def gesture_samples(root: str | Path, split: str) -> list[Sample]:
    """Samples of the original layout's ``split``, in trial-list then labels.csv order."""
    _check_split(split)
    folder = gesture_folder(root)
    trials = folder / f"trials_to_{split}.txt"
    if not trials.is_file():
        raise FileNotFoundError(f"{trials} is missing: the DVS128 Gesture folder {folder} is incomplete")
    samples = []
    for name in trials.read_text().split():
        recording = folder / name
        if not recording.is_file():
            raise FileNotFoundError(f"{recording} (listed in {trials.name}) is missing")
        labels = folder / f"{Path(name).stem}_labels.csv"
        if not labels.is_file():
            raise FileNotFoundError(f"{labels} (the labels of {name}) is missing")
        subject = _subject(name)
        samples += [Sample(str(recording), label, start, end, subject) for label, start, end in read_labels(labels)]
    return samples


def tonic_gesture_samples(root: str | Path, split: str) -> list[Sample]:
    """Samples of tonic's layout (one .npy per class per recording); raises if the data is not there."""
    _check_split(split)
    root = Path(root)
    candidates = [root / "DVSGesture" / TONIC_FOLDERS[split], root / TONIC_FOLDERS[split]]
    folder = next((c for c in candidates if c.is_dir()), None)
    if folder is None:
        raise FileNotFoundError(
            f"no tonic DVSGesture {split} data at {candidates[0]}: " + WHERE_TO_GET.format(root=root)
        )
    samples = []
    for recording in sorted(p for p in folder.iterdir() if p.is_dir()):
        for path in sorted(recording.glob("*.npy"), key=lambda p: (len(p.stem), p.stem)):
            if not path.stem.isdigit() or not 0 <= int(path.stem) < N_CLASSES:
                raise ValueError(f"{path}: expected a file named by its label 0..{N_CLASSES - 1}")
            with open_recording(path) as opened:
                time_range = opened.info.time_range
            if time_range is None:
                raise ValueError(f"{path}: holds no events")
            samples.append(Sample(str(path), int(path.stem), time_range[0], time_range[1] + 1, _subject(recording.name)))
    if not samples:
        raise FileNotFoundError(f"no .npy samples under {folder}: " + WHERE_TO_GET.format(root=root))
    return samples


def no_gesture_samples(samples: list[Sample], min_us: int, margin_us: int = NO_GESTURE_MARGIN_US) -> list[Sample]:
    """The unlabelled stretches between consecutive labelled samples of each recording, ``margin_us`` clear of
    both, that are at least ``min_us`` long, as samples labelled NO_GESTURE (recordings in first-seen order, then
    by time). A recording with one sample (a gait walk, a file of tonic's layout) has none."""
    by_recording = defaultdict(list)
    for sample in samples:
        by_recording[sample.path].append(sample)
    stretches = []
    for path, labelled in by_recording.items():
        labelled = sorted(labelled, key=lambda s: s.start_us)
        reach = labelled[0].end_us
        for sample in labelled[1:]:
            start, end = reach + margin_us, sample.start_us - margin_us
            if end - start >= min_us:
                stretches.append(Sample(path, NO_GESTURE, start, end, sample.subject))
            reach = max(reach, sample.end_us)
    return stretches


__all__ = ["FrameCache", "FrameDataset", "Sample", "NO_GESTURE", "gesture_folder", "gesture_samples", "no_gesture_samples", "read_labels", "tonic_gesture_samples"]
