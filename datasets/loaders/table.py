"""The datasets masnn knows: how to list their samples, name their classes and hold out validation samples.

Light to import (the synthetic generator and the CLI read it without loading torch): each loader is imported
only when its samples or class names are asked for."""
from __future__ import annotations

import importlib
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable

if TYPE_CHECKING:
    from masnn.datasets.loaders.cache import Sample

SPLITS = ("train", "test")

# DVS128 Gesture's labels 1-11, in order. "Right" is the subject's right arm (the image's left half), and
# "clockwise" is as the subject sees it.
GESTURE_CLASSES = [
    "hand clap",
    "right hand wave",
    "left hand wave",
    "right arm clockwise",
    "right arm counter-clockwise",
    "left arm clockwise",
    "left arm counter-clockwise",
    "arm roll",
    "air drums",
    "air guitar",
    "other gestures",
]


def _reversed_sense(name: str) -> str:
    if name.endswith(" counter-clockwise"):
        return name.removesuffix("counter-clockwise") + "clockwise"
    if name.endswith(" clockwise"):
        return name.removesuffix("clockwise") + "counter-clockwise"
    return name


def _other_side(name: str) -> str:
    return re.sub(r"\b(right|left)\b", lambda side: "left" if side.group(1) == "right" else "right", name)


def _renamed_labels(class_names: list[str], rename: Callable[[str], str]) -> dict[int, int]:
    return {label: class_names.index(other) for label, name in enumerate(class_names)
            if (other := rename(name)) != name and other in class_names}


def time_reversed_labels(class_names: list[str]) -> dict[int, int]:
    """label -> the label of the same motion played backwards, for the classes that change: a clockwise arm
    circle becomes the same arm's counter-clockwise one and back; every other class (claps, waves, rolls,
    drumming, identities) stays itself."""
    return _renamed_labels(class_names, _reversed_sense)


def mirrored_labels(class_names: list[str]) -> dict[int, int]:
    """label -> the label of the same motion seen in a mirror (x reversed), for the classes that change: the
    right hand or arm becomes the left and back, and a circle's sense reverses with it (a right arm circled
    clockwise, mirrored, is a left arm circled counter-clockwise); claps, rolls, drumming stay themselves."""
    return _renamed_labels(class_names, lambda name: _other_side(_reversed_sense(name)))


@dataclass(frozen=True)
class DatasetSpec:
    name: str
    samples: Callable[[Path, str], list[Sample]]  # (root, split) -> the split's samples
    class_names: Callable[[Path], list[str]]  # root -> the name of each label, in label order
    # training samples -> (train, validation), so that validation never touches the test split
    validation_split: Callable[[list[Sample]], tuple[list[Sample], list[Sample]]]
    sensor_size: tuple[int, int] = (128, 128)  # width, height


def _imported_when_called(module: str, function: str) -> Callable:
    def call(*args):
        return getattr(importlib.import_module(module), function)(*args)

    return call


def _gesture_class_names(root: Path) -> list[str]:
    return list(GESTURE_CLASSES)


def _gait_class_names(root: Path) -> list[str]:
    from masnn.datasets.loaders.gait import gait_subjects

    return [f"subject {s}" for s in gait_subjects(root)]


def _hold_out_last_users(samples: list[Sample]) -> tuple[list[Sample], list[Sample]]:
    """The last ~15% of the training users validate: a user's samples are never on both sides."""
    users = sorted({s.subject for s in samples})
    held = set(users[len(users) - max(1, round(0.15 * len(users))):]) if len(users) > 1 else set()
    return [s for s in samples if s.subject not in held], [s for s in samples if s.subject in held]


def _hold_out_every_fifth(samples: list[Sample]) -> tuple[list[Sample], list[Sample]]:
    """Every fifth walk validates: gait's classes are its subjects, so each subject must be on both sides."""
    return [s for i, s in enumerate(samples) if i % 5], [s for i, s in enumerate(samples) if i % 5 == 0]


_GESTURE = "masnn.datasets.loaders.gesture"
DATASETS: dict[str, DatasetSpec] = {spec.name: spec for spec in (
    DatasetSpec("gesture", _imported_when_called(_GESTURE, "gesture_samples"), _gesture_class_names, _hold_out_last_users),
    DatasetSpec("tonic-gesture", _imported_when_called(_GESTURE, "tonic_gesture_samples"), _gesture_class_names,
                _hold_out_last_users),
    DatasetSpec("gait", _imported_when_called("masnn.datasets.loaders.gait", "gait_samples"), _gait_class_names,
                _hold_out_every_fifth),
)}


def find_dataset(name: str) -> DatasetSpec:
    if name not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}; choose one of {', '.join(DATASETS)}")
    return DATASETS[name]
