"""DVS128 Gait (EV-Gait) sample index: root/{train,test}/<subject id>/*.txt, one "t x y p" line per event.

Also accepted: root/DVS128-Gait-Day/origin/{train,test}/... . The split is given by the folders. The label
of a walk is the index of its subject id in ``sorted()`` of the train split's subject ids (string order), so
train and test agree; a test subject absent from train is an error. A sample is the whole file: from its
first event to its last (+1 us), read from the file's first and last lines without parsing the rest.
"""
from __future__ import annotations

import os
from pathlib import Path

from masnn.datasets.loaders.cache import FrameCache, FrameDataset, Sample
from masnn.datasets.loaders.table import SPLITS


def gait_folder(root: str | Path) -> Path:
    root = Path(root)
    for folder in (root, root / "DVS128-Gait-Day" / "origin", root / "origin"):
        if (folder / "train").is_dir():
            return folder
    raise FileNotFoundError(
        f"no DVS128 Gait dataset at {root} (looked for {root / 'train'} and "
        f"{root / 'DVS128-Gait-Day' / 'origin' / 'train'}): get DVS128-Gait-Day from the EV-Gait authors "
        f"and put its origin/train and origin/test folders there; masnn never downloads it"
    )


def gait_subjects(root: str | Path) -> list[str]:
    """The train split's subject ids, sorted: label i is subject ids[i]."""
    folder = gait_folder(root) / "train"
    return sorted(p.name for p in folder.iterdir() if p.is_dir())


def _first_and_last_time(path: Path) -> tuple[int, int]:
    with open(path, "rb") as f:
        first = f.readline().split()
        size = f.seek(0, os.SEEK_END)
        tail = b""
        back = 256
        while True:
            f.seek(max(0, size - back))
            tail = f.read()
            lines = [line for line in tail.splitlines() if line.strip()]
            if len(lines) >= 2 or back >= size:
                break
            back *= 4
    if not first or not lines:
        raise ValueError(f"{path}: holds no events")
    try:
        return int(first[0]), int(lines[-1].split()[0])
    except (ValueError, IndexError):
        raise ValueError(f"{path}: first or last line is not 't x y p'") from None


def gait_samples(root: str | Path, split: str) -> list[Sample]:
    if split not in SPLITS:
        raise ValueError(f"split must be 'train' or 'test', not {split!r}")
    folder = gait_folder(root) / split
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder} is missing: the DVS128 Gait dataset under {folder.parent} is incomplete")
    labels = {subject: i for i, subject in enumerate(gait_subjects(root))}
    samples = []
    for subject_folder in sorted(p for p in folder.iterdir() if p.is_dir()):
        subject = subject_folder.name
        if subject not in labels:
            raise ValueError(f"subject {subject!r} of the {split} split has no train folder, so no label")
        for path in sorted(subject_folder.glob("*.txt")):
            first, last = _first_and_last_time(path)
            samples.append(Sample(str(path), labels[subject], first, last + 1, subject))
    return samples


__all__ = ["FrameCache", "FrameDataset", "Sample", "gait_folder", "gait_samples", "gait_subjects"]
