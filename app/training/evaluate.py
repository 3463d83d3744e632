"""`masnn evaluate`: a checkpoint on a dataset split, under both protocols, with spikes and energy.

Protocols (the keys of the report's ``accuracy``):
- ``vote``, the paper's 10-crop vote: each sample gives ``n_crops`` windows of T x dt spread evenly over it; a
  sample counts as right when more than half of its crops are right (the authors' protocol);
- ``single``: the centre crop alone.
The voted class of a sample (the most frequent crop prediction) feeds ``per_class_accuracy`` and ``confusion``
(rows: true class, columns: voted class). Spikes, NASAR, SOPs, MACs and energy come from ``models.accounting``
per crop, averaged over crops and samples (``per_crop_mean``; ``macs`` without attention, ``attention_macs``
apart, ``ann_energy_uj`` that of an ANN of the same shape run frame by frame); rEE needs a vanilla checkpoint
run on the same windows. The NeuroBench-named figures are given under their names so that numbers compare
across papers. Report keys are identifiers; the words people read are in the tables that print them
(``masnn.report``, the model card). Under torchrun the samples are sharded over the processes (gloo) and
gathered on rank 0, whose report equals a one-process run's.

The report's ``no_gesture`` (None where there is none): the unlabelled stretches between the samples of a
recording that hold a whole window (``masnn.datasets.loaders.gesture.no_gesture_samples``; none in gait's or
tonic's layouts), scored on the same number of crops: how confident the model is where there is no gesture (its
top class probability, as ``masnn classify`` reports it, against the gesture crops'), and with a calibration file
beside the checkpoint the share of those crops it calls uncertain and what it names the others.
"""
from __future__ import annotations

import json
import os
import time
from collections import Counter
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist

from masnn.calibration import class_probabilities, is_uncertain, load_calibration
from masnn.checkpoint import both_ways_runner, build_model, checkpoint_framing, load_checkpoint
from masnn.datasets.io.writers import atomic_path
from masnn.datasets.loaders.cache import FrameCache, FrameDataset
from masnn.datasets.loaders.gesture import no_gesture_samples
from masnn.models.accounting import account
from masnn.models.both_ways import BothWays
from masnn.models.inference import prepare_for_inference
from masnn.training.distributed import init_distributed


def eval_device(device: str | torch.device) -> torch.device:
    if isinstance(device, torch.device):
        return device
    if device == "auto":
        device = f"cuda:{os.environ.get('LOCAL_RANK', '0')}" if torch.cuda.is_available() else "cpu"
    return torch.device(device)


def footprint_bytes(model: torch.nn.Module) -> int:
    return sum(t.numel() * t.element_size() for t in [*model.parameters(), *model.buffers()])


STAT_KEYS = ("spikes", "nasar", "sops", "macs", "attention_macs", "energy_pj", "ann_frame_by_frame_energy_pj")


@torch.inference_mode()
def evaluate(checkpoint_path, samples, n_crops: int = 10, cache: FrameCache | None = None, preset: str = "fp32-45nm",
             vanilla_path=None, device: str | torch.device = "cpu", both_ways: bool | None = None) -> dict | None:
    """The report (a plain dict) of one checkpoint on ``samples``. Under torchrun the samples are sharded over
    the ranks and rank 0 returns the whole report (other ranks return None). ``device``: cpu, cuda[:N] or auto
    (a GPU where there is one; under torchrun, the process's LOCAL_RANK GPU). ``both_ways``: every crop scored as
    recorded and played backwards (None: as the checkpoint was trained); the vanilla network is scored alike."""
    device = eval_device(device)
    checkpoint = load_checkpoint(checkpoint_path)
    model = build_model(checkpoint).eval().to(device)
    vanilla = build_model(load_checkpoint(vanilla_path, expect={"num_classes": checkpoint["model_args"]["num_classes"]})).eval().to(device) if vanilla_path else None
    # the compiled inference copies: the same spikes and accounting as the trained modules, in half the time
    runner = both_ways_runner(checkpoint, prepare_for_inference(model), both_ways).to(device)
    scored_both_ways = isinstance(runner, BothWays)
    vanilla_runner = both_ways_runner(checkpoint, prepare_for_inference(vanilla), scored_both_ways).to(device) if vanilla is not None else None
    framing = checkpoint_framing(checkpoint)
    config = checkpoint.get("config") or {}

    def confidences(rates: torch.Tensor) -> list[float]:
        return class_probabilities(rates.float().cpu(), config.get("loss", "mse"), config.get("ce_scale", 10.0)).max(-1).values.tolist()

    stretches = no_gesture_samples(samples, framing.window_us)
    rank, world, started = init_distributed(torch.device("cpu"))  # samples rank, rank + world, ... (gloo)
    try:
        indices = list(range(rank, len(samples), world))
        dataset = FrameDataset([samples[i] for i in indices], framing, "crops", n_crops=n_crops, cache=cache)
        centre = (n_crops - 1) // 2
        scored, seconds = [], 0.0
        for i, index in enumerate(indices):
            crops, label = dataset[i]
            x = crops.transpose(0, 1).contiguous().to(device)  # (T, crops, 2, H, W): the crops as a batch
            started_at = time.perf_counter()
            rates, trace = runner(x, record=True)
            if device.type == "cuda":
                torch.cuda.synchronize(device)  # the latency is the work's, not the launch's
            seconds += time.perf_counter() - started_at
            baseline = account(vanilla_runner(x, record=True)[1], preset) if vanilla is not None else None
            report = account(trace, preset, baseline)
            predictions = rates.argmax(-1).tolist()
            stats = {key: getattr(report, key) for key in STAT_KEYS} | {"ree": report.ree or 0.0}
            scored.append((index, {"label": int(label), "crop_predictions": predictions,
                                   "crop_confidences": confidences(rates),
                                   "vote": Counter(predictions).most_common(1)[0][0], "single": predictions[centre]},
                           stats, report.neurons))
        no_gesture = []  # (index, crop predictions, crop confidences)
        stretch_indices = list(range(rank, len(stretches), world))
        stretch_set = FrameDataset([stretches[i] for i in stretch_indices], framing, "crops", n_crops=n_crops, cache=cache)
        for i, index in enumerate(stretch_indices):
            rates = runner(stretch_set[i][0].transpose(0, 1).contiguous().to(device))
            no_gesture.append((index, rates.argmax(-1).tolist(), confidences(rates)))
        if world > 1:
            gathered = [None] * world
            dist.all_gather_object(gathered, (scored, seconds, no_gesture))
            scored = [item for part, _, _ in gathered for item in part]
            seconds = sum(part_seconds for _, part_seconds, _ in gathered)
            no_gesture = [item for _, _, part in gathered for item in part]
    finally:
        if started:
            dist.destroy_process_group()
    if rank != 0:
        return None
    scored.sort(key=lambda item: item[0])
    report = _report(checkpoint_path, checkpoint, model, framing, n_crops, scored, seconds, preset, vanilla is not None)
    report["both_ways"] = scored_both_ways
    report["no_gesture"] = _no_gesture_report(sorted(no_gesture), report, load_calibration(checkpoint_path)) if no_gesture else None
    return report


def _no_gesture_report(no_gesture: list, report: dict, calibration: dict | None) -> dict:
    """Crops of the stretches without a gesture: confidence against the gesture crops', and under a calibrated
    threshold the share called uncertain and the classes named (crops) otherwise."""
    names = report["class_names"] or [str(c) for c in range(report["model"]["num_classes"])]
    crops = [(prediction, confidence) for _, predictions, confidences in no_gesture for prediction, confidence in zip(predictions, confidences)]
    threshold = calibration["threshold"] if calibration else None
    named = Counter(names[p] for p, c in crops if not is_uncertain(c, threshold))
    return {
        "samples": len(no_gesture), "crops": len(crops),
        "mean_confidence": float(np.mean([c for _, c in crops])),
        "gesture_mean_confidence": float(np.mean([c for s in report["per_sample"] for c in s["crop_confidences"]])),
        "threshold": threshold,
        "uncertain": None if threshold is None else (len(crops) - sum(named.values())) / len(crops),
        "named": dict(named.most_common()),
    }


def _report(checkpoint_path, checkpoint, model, framing, n_crops, scored, seconds, preset, with_vanilla) -> dict:
    classes = checkpoint["model_args"]["num_classes"]
    per_sample = [sample for _, sample, _, _ in scored]
    n = len(per_sample)
    mean = {key: sum(stats[key] for _, _, stats, _ in scored) / n for key in (*STAT_KEYS, "ree")}
    vote_right = [sum(p == s["label"] for p in s["crop_predictions"]) > n_crops / 2 for s in per_sample]
    confusion = np.zeros((classes, classes), dtype=int)
    for s in per_sample:
        confusion[s["label"], s["vote"]] += 1
    parameters = sum(p.numel() for p in model.parameters())
    return {
        "checkpoint": str(checkpoint_path), "model": checkpoint["model_args"], "framing": framing.to_dict(),
        "class_names": checkpoint.get("config", {}).get("class_names") or None,
        "samples": n, "crops": n_crops,
        "accuracy": {"vote": float(np.mean(vote_right)),
                     "single": float(np.mean([s["single"] == s["label"] for s in per_sample]))},
        "per_class_accuracy": [float(confusion[c, c] / confusion[c].sum()) if confusion[c].sum() else None for c in range(classes)],
        "confusion": confusion.tolist(),
        "per_crop_mean": {"spikes": mean["spikes"], "nasar": mean["nasar"], "sops": mean["sops"], "macs": mean["macs"],
                          "attention_macs": mean["attention_macs"], "energy_uj": mean["energy_pj"] / 1e6,
                          "ann_energy_uj": mean["ann_frame_by_frame_energy_pj"] / 1e6,
                          "ree_vs_vanilla": mean["ree"] if with_vanilla else None, "energy_preset": preset},
        "latency_ms_per_window": 1e3 * seconds / (n * n_crops),
        "neurobench": {"activation_sparsity": 1 - mean["nasar"], "synaptic_operations": {"effective_macs": mean["macs"] + mean["attention_macs"], "effective_acs": mean["sops"]},
                       "parameter_count": parameters, "footprint_bytes": footprint_bytes(model), "neurons": scored[0][3]},
        "per_sample": per_sample,
    }


def write_report(report: dict, path) -> None:
    with atomic_path(path) as temporary:
        temporary.write_text(json.dumps(report, indent=2))


def _text_image(text: str, height: int, width: int, scale: float, centre: bool = False) -> np.ndarray:
    """White strip (height x width, BGR) with ``text`` in black, centred vertically, left-aligned or centred."""
    import cv2

    strip = np.full((height, width, 3), 255, np.uint8)
    (text_w, text_h), _ = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, 1)
    x = max(2, (width - text_w) // 2) if centre else 2
    cv2.putText(strip, text, (x, (height + text_h) // 2), cv2.FONT_HERSHEY_SIMPLEX, scale, (0, 0, 0), 1, cv2.LINE_AA)
    return strip


def confusion_image(confusion, names=None, cell: int = 40):
    """A BGR picture of the confusion matrix: rows the true classes, columns the voted predictions, each named
    (column names written upwards), the counts in the cells, shade by the row's share; axis titles "true class"
    (left, upwards) and "predicted (voted) class" (top)."""
    import cv2

    matrix = np.asarray(confusion, dtype=float)
    k = len(matrix)
    labels = [str(n) for n in names] if names else [f"class {i}" for i in range(k)]
    font, scale = cv2.FONT_HERSHEY_SIMPLEX, 0.4
    name_w = max([cv2.getTextSize(label, font, scale, 1)[0][0] for label in labels] + [10]) + 8
    axis = 22  # the band an axis title takes
    top, left = axis + name_w, axis + name_w
    titles = ("predicted (voted) class", "true class")
    title_w = [cv2.getTextSize(t, font, 0.45, 1)[0][0] + 8 for t in titles]
    size = (top + max(k * cell, title_w[1]) + 1, left + max(k * cell, title_w[0]) + 1)
    image = np.full((*size, 3), 255, np.uint8)
    shares = matrix / np.maximum(matrix.sum(1, keepdims=True), 1)
    for r in range(k):
        for c in range(k):
            y, x = top + r * cell, left + c * cell
            shade = int(255 * (1 - shares[r, c]))
            cv2.rectangle(image, (x, y), (x + cell, y + cell), (255, shade, shade), -1)
            cv2.rectangle(image, (x, y), (x + cell, y + cell), (180, 180, 180), 1)
            if matrix[r, c]:
                text = str(int(matrix[r, c]))
                (w, h), _ = cv2.getTextSize(text, font, scale, 1)
                cv2.putText(image, text, (x + (cell - w) // 2, y + (cell + h) // 2), font, scale,
                            (0, 0, 0) if shares[r, c] < 0.6 else (255, 255, 255), 1, cv2.LINE_AA)
        image[top + r * cell : top + (r + 1) * cell, axis : axis + name_w] = _text_image(labels[r], cell, name_w, scale)
        column = np.rot90(_text_image(labels[r], cell, name_w, scale))  # written upwards, ending at the grid
        image[axis : axis + name_w, left + r * cell : left + (r + 1) * cell] = column
    span = [max(k * cell, w) for w in title_w]
    image[:axis, left : left + span[0]] = _text_image(titles[0], axis, span[0], 0.45, centre=True)
    image[top : top + span[1], :axis] = np.rot90(_text_image(titles[1], axis, span[1], 0.45, centre=True))
    return image


def write_confusion_png(confusion, path, names=None) -> None:
    """The picture of ``confusion_image``; ``names``: the class names (the report's ``class_names``)."""
    import cv2

    ok, encoded = cv2.imencode(".png", confusion_image(confusion, names))
    with atomic_path(Path(path)) as temporary:
        temporary.write_bytes(encoded.tobytes())
