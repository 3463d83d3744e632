"""A clip's symmetric variants and the class each should read (`masnn classify --variants`).

Played backwards (time reversed, each polarity flipped: what brightened going forwards darkens going backwards),
an arm circled clockwise is an arm circled counter-clockwise; seen in a mirror, the right arm is the left and its
circle's sense reverses too. Claps, rolls and drumming stay themselves either way. A model that reads a clip's
motion names each variant's class; one that guesses a circle's sense gets about half of them right. So the three
real DVS128 Gesture clips give twelve checks instead of three, without training on any of them.
"""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np

from masnn.classify import CLIP_SECONDS, Classifier, ClassifyOptions, classify_recording
from masnn.datasets.io.readers import open_recording
from masnn.datasets.io.recording import EventsRecording, first_event_time
from masnn.datasets.loaders.table import mirrored_labels, time_reversed_labels
from masnn.datasets.transforms.augment import reverse_time
from masnn.datasets.transforms.augment_spatial import copy_events, mirror_horizontally

VARIANTS = {  # name -> (played backwards, mirrored)
    "as recorded": (False, False),
    "backwards": (True, False),
    "mirrored": (False, True),
    "mirrored backwards": (True, True),
}


def play_backwards(events: np.ndarray) -> np.ndarray:
    """The clip played backwards over its own span: its last event comes first, at the time of its first."""
    first = int(events["t"][0])
    span = int(events["t"][-1]) - first + 1
    shifted = copy_events(events)
    shifted["t"] -= first
    out = reverse_time(shifted, span)
    out["t"] += first
    return out


def variant_events(events: np.ndarray, variant: str, width: int) -> np.ndarray:
    backwards, mirrored = VARIANTS[variant]
    if backwards:
        events = play_backwards(events)
    return mirror_horizontally(events, width) if mirrored else events


def variant_label(label: int, variant: str, class_names: list[str]) -> int:
    """The class the ``variant`` of a clip of class ``label`` shows."""
    backwards, mirrored = VARIANTS[variant]
    if backwards:
        label = time_reversed_labels(class_names).get(label, label)
    return mirrored_labels(class_names).get(label, label) if mirrored else label


def classify_variants(path: str | Path, classifier: Classifier, options: ClassifyOptions = ClassifyOptions()) -> list[dict]:
    """The report of each variant of the clip at ``path`` (its part from ``options``' start to end), in VARIANTS'
    order, each with its ``variant``. A clip is held in memory: longer than CLIP_SECONDS is refused."""
    with open_recording(path) as recording:
        info = recording.info
        first = first_event_time(recording)
        start, end = (None if s is None else first + int(round(s * 1e6)) for s in (options.start_s, options.end_s))
        if info.time_range is not None:
            _check_clip(path, (min(end or info.time_range[1], info.time_range[1]) - max(start or first, first)) / 1e6)
        events = recording.read(start, end)
    _check_clip(path, (int(events["t"][-1]) - int(events["t"][0])) / 1e6)
    whole = replace(options, start_s=None, end_s=None)
    reports = []
    for variant in VARIANTS:
        shown = EventsRecording(variant_events(events, variant, info.width), (info.width, info.height), str(path), info.format)
        reports.append({**classify_recording(shown, classifier, whole), "variant": variant})
    return reports


def _check_clip(path, seconds: float) -> None:
    if seconds > CLIP_SECONDS:
        raise ValueError(f"{path}: --variants takes a clip of at most {CLIP_SECONDS:g} s, this is {seconds:.1f} s "
                         "(choose a part with --start and --end)")


__all__ = ["VARIANTS", "classify_variants", "play_backwards", "variant_events", "variant_label"]
