"""The "uncertain" answer: a confidence threshold per model, calibrated on held-out data.

A window's confidence is its top class probability (``class_probabilities``). The threshold is the
confidence that keeps ``kept_correct`` (95 %) of the correctly classified held-out windows: with the
correct windows' confidences sorted ascending c[0] <= ... <= c[n-1], it is c[floor(n * (1 - kept_correct))],
so at least that fraction of them are at or above it. A window (or a clip's mean) whose confidence is below
it is answered "uncertain" (its top guess is still reported).

The held-out windows are made as `masnn classify` makes them: sliding windows of the model's T x dt every
half window, over each labelled sample of the split (the model never trained on it). The result is stored
beside the checkpoint as ``<name>.calibration.json``; a checkpoint without one uses no threshold.
"""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Callable

import numpy as np

KEPT_CORRECT = 0.95
UNCERTAIN = "uncertain"
RULE = ("a window is uncertain when its confidence (top class probability) is below the threshold; the threshold is "
        "the confidence that keeps {kept:.0%} of the correctly classified held-out windows (sliding windows of the "
        "model's own length every half window, as masnn classify makes them) at or above it")


def class_probabilities(rates, loss: str = "mse", ce_scale: float = 10.0):
    """Output firing rates (..., classes), a torch tensor, as class probabilities: softmax(rates * ce_scale) for a
    model trained with cross-entropy; for the paper's MSE, the rates over their sum (every class equally likely
    when none fired)."""
    import torch

    if loss == "ce":
        return torch.softmax(rates * ce_scale, -1)
    total = rates.sum(-1, keepdim=True)
    return torch.where(total > 0, rates / total.clamp_min(1e-12), torch.full_like(rates, 1.0 / rates.shape[-1]))


def calibration_path(weights: str | Path) -> Path:
    """``gesture-tcsa.pt`` -> ``gesture-tcsa.calibration.json`` beside it."""
    weights = Path(weights)
    return weights.with_name(f"{weights.stem}.calibration.json")


def load_calibration(weights: str | Path) -> dict | None:
    """The calibration stored beside ``weights``, or None; ValueError naming a file that is not one."""
    path = calibration_path(weights)
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as error:
        raise ValueError(f"{path}: not a calibration file ({error})") from None
    threshold = data.get("threshold") if isinstance(data, dict) else None
    if not (isinstance(threshold, (int, float)) and math.isfinite(threshold) and 0 <= threshold <= 1):
        raise ValueError(f"{path}: 'threshold' must be a probability from 0 to 1 (got {threshold!r})")
    return data


def threshold_for(confidences, correct, kept_correct: float = KEPT_CORRECT) -> float:
    """The rule: the confidence that keeps ``kept_correct`` of the correctly classified windows at or above it."""
    if not 0 < kept_correct <= 1:
        raise ValueError(f"kept_correct must be in (0, 1] (got {kept_correct})")
    confidences = np.asarray(confidences, float)
    kept = np.sort(confidences[np.asarray(correct, bool)])
    if not len(kept):
        raise ValueError("no correctly classified window to calibrate on")
    return float(kept[int(math.floor(len(kept) * (1 - kept_correct) + 1e-9))])


def is_uncertain(confidence: float, threshold: float | None) -> bool:
    return threshold is not None and confidence < threshold


def answer(top_k: list[dict], threshold: float | None) -> tuple[str, float]:
    """(class or "uncertain", confidence) of a top-k list."""
    best = top_k[0]
    return (UNCERTAIN if is_uncertain(best["probability"], threshold) else best["class"]), float(best["probability"])


def uncertain_text(top_guess: str, confidence: float) -> str:
    """How a person reads an uncertain answer."""
    return f"uncertain (top guess: {top_guess}, {100 * confidence:.0f} %)"


def held_out_windows(classifier, samples, progress: Callable[[int, int], None] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(confidence, correct) of every sliding window (every half window) over each sample's [start, end)."""
    import torch

    from masnn.datasets.io.readers import open_recording
    from masnn.datasets.transforms.pipeline import iter_recording_frames

    steps = classifier.framing.n_frames
    stride = max(1, steps // 2)
    confidences, correct = [], []
    for done, sample in enumerate(samples, 1):
        with open_recording(sample.path) as recording:
            frames = list(iter_recording_frames(recording, classifier.framing, sample.start_us, sample.end_us))
        frames = np.concatenate(frames) if frames else np.zeros((0,), np.int16)
        starts = range(0, len(frames) - steps + 1, stride) if len(frames) >= steps else []
        if not len(starts):
            continue
        x = torch.from_numpy(np.stack([frames[s:s + steps] for s in starts], 1)).float().to(classifier.device)  # (T, B, 2, H, W)
        with torch.inference_mode():
            rates = classifier.runner(x)
        rates = rates[0] if isinstance(rates, tuple) else rates
        probabilities = classifier.probabilities(rates.float().cpu())
        confidences += probabilities.max(-1).values.tolist()
        correct += (probabilities.argmax(-1) == sample.label).tolist()
        if progress is not None:
            progress(done, len(samples))
    return np.array(confidences), np.array(correct, bool)


def calibrate(weights: str | Path, data: str | Path, split: str = "validation", dataset: str = "gesture",
              kept_correct: float = KEPT_CORRECT, device: str = "cpu",
              progress: Callable[[int, int], None] | None = None, both_ways: bool | None = None) -> dict:
    """The calibration of ``weights`` on ``split`` (validation: the training users the trainer held out;
    test: the test split) of ``data``."""
    from masnn.classify import Classifier
    from masnn.datasets.loaders.table import find_dataset

    if split not in ("validation", "test"):
        raise ValueError(f"--split: must be validation or test (got {split!r})")
    spec = find_dataset(dataset)
    samples = spec.validation_split(spec.samples(Path(data), "train"))[1] if split == "validation" else spec.samples(Path(data), "test")
    if not samples:
        raise ValueError(f"{data}: no {split} samples")
    classifier = Classifier.load(weights, device, calibrated=False, both_ways=both_ways)
    confidences, correct = held_out_windows(classifier, samples, progress)
    threshold = threshold_for(confidences, correct, kept_correct)
    users = sorted({s.subject for s in samples})
    return {
        "schema": "masnn.calibration/1",
        "weights": Path(weights).name,
        "threshold": round(threshold, 6),
        "kept_correct": kept_correct,
        "rule": RULE.format(kept=kept_correct),
        "data": f"{len(samples)} samples of {users[0]}-{users[-1]} ({dataset} {split} split of {data})",
        "both_ways": classifier.both_ways,
        "window_us": classifier.window_us,
        "stride_us": max(1, classifier.framing.n_frames // 2) * classifier.framing.dt_us,
        "windows": int(len(confidences)),
        "correct_windows": int(correct.sum()),
        "accuracy": float(correct.mean()) if len(correct) else None,
        "uncertain_fraction_correct": float((confidences[correct] < threshold).mean()),
        "uncertain_fraction_wrong": float((confidences[~correct] < threshold).mean()) if (~correct).any() else None,
    }
