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
"""
from __future__ import annotations

import json
import time
from collections import Counter
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist

from masnn.checkpoint import build_model, framing_config, load_checkpoint
from masnn.datasets.io.writers import atomic_path
from masnn.datasets.loaders.cache import FrameCache, FrameDataset
from masnn.datasets.transforms.pipeline import FramingConfig
from masnn.models.accounting import account
from masnn.models.inference import prepare_for_inference
from masnn.training.distributed import init_distributed


def framing_of(checkpoint: dict) -> FramingConfig:
    return framing_config(checkpoint["config"].get("framing", {}), checkpoint["model_args"]["T"])


def footprint_bytes(model: torch.nn.Module) -> int:
    return sum(t.numel() * t.element_size() for t in [*model.parameters(), *model.buffers()])


STAT_KEYS = ("spikes", "nasar", "sops", "macs", "attention_macs", "energy_pj", "ann_frame_by_frame_energy_pj")


@torch.inference_mode()
def evaluate(checkpoint_path, samples, n_crops: int = 10, cache: FrameCache | None = None, preset: str = "fp32-45nm",
             vanilla_path=None) -> dict | None:
    """The report (a plain dict) of one checkpoint on ``samples``. Under torchrun the samples are sharded over
    the ranks and rank 0 returns the whole report (other ranks return None)."""
    checkpoint = load_checkpoint(checkpoint_path)
    model = build_model(checkpoint).eval()
    vanilla = build_model(load_checkpoint(vanilla_path, expect={"num_classes": checkpoint["model_args"]["num_classes"]})).eval() if vanilla_path else None
    # the compiled inference copies: the same spikes and accounting as the trained modules, in half the time
    runner = prepare_for_inference(model)
    vanilla_runner = prepare_for_inference(vanilla) if vanilla is not None else None
    framing = framing_of(checkpoint)
    rank, world, started = init_distributed(torch.device("cpu"))  # samples rank, rank + world, ... (gloo)
    try:
        indices = list(range(rank, len(samples), world))
        dataset = FrameDataset([samples[i] for i in indices], framing, "crops", n_crops=n_crops, cache=cache)
        centre = (n_crops - 1) // 2
        scored, seconds = [], 0.0
        for i, index in enumerate(indices):
            crops, label = dataset[i]
            x = crops.transpose(0, 1).contiguous()  # (T, crops, 2, H, W): the crops as a batch
            started_at = time.perf_counter()
            rates, trace = runner(x, record=True)
            seconds += time.perf_counter() - started_at
            baseline = account(vanilla_runner(x, record=True)[1], preset) if vanilla is not None else None
            report = account(trace, preset, baseline)
            predictions = rates.argmax(-1).tolist()
            stats = {key: getattr(report, key) for key in STAT_KEYS} | {"ree": report.ree or 0.0}
            scored.append((index, {"label": int(label), "crop_predictions": predictions,
                                   "vote": Counter(predictions).most_common(1)[0][0], "single": predictions[centre]},
                           stats, report.neurons))
        if world > 1:
            gathered = [None] * world
            dist.all_gather_object(gathered, (scored, seconds))
            scored = [item for part, _ in gathered for item in part]
            seconds = sum(part_seconds for _, part_seconds in gathered)
    finally:
        if started:
            dist.destroy_process_group()
    if rank != 0:
        return None
    scored.sort(key=lambda item: item[0])
    return _report(checkpoint_path, checkpoint, model, framing, n_crops, scored, seconds, preset, vanilla is not None)


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


def confusion_image(confusion, names=None, cell: int = 40):
    """A BGR picture of the confusion matrix: rows true classes, columns predictions, shade by row share."""
    import cv2

    matrix = np.asarray(confusion, dtype=float)
    k = len(matrix)
    margin = cell
    image = np.full((margin + k * cell + 1, margin + k * cell + 1, 3), 255, np.uint8)
    shares = matrix / np.maximum(matrix.sum(1, keepdims=True), 1)
    for r in range(k):
        for c in range(k):
            y, x = margin + r * cell, margin + c * cell
            shade = int(255 * (1 - shares[r, c]))
            cv2.rectangle(image, (x, y), (x + cell, y + cell), (255, shade, shade), -1)
            cv2.rectangle(image, (x, y), (x + cell, y + cell), (180, 180, 180), 1)
            if matrix[r, c]:
                cv2.putText(image, str(int(matrix[r, c])), (x + 4, y + cell // 2 + 5), cv2.FONT_HERSHEY_SIMPLEX, 0.4,
                            (0, 0, 0) if shares[r, c] < 0.6 else (255, 255, 255), 1, cv2.LINE_AA)
        label = (names[r] if names else str(r + 1))[:4]
        cv2.putText(image, label, (2, margin + r * cell + cell // 2 + 5), cv2.FONT_HERSHEY_SIMPLEX, 0.35, (0, 0, 0), 1, cv2.LINE_AA)
        cv2.putText(image, label, (margin + r * cell + 2, margin - 8), cv2.FONT_HERSHEY_SIMPLEX, 0.35, (0, 0, 0), 1, cv2.LINE_AA)
    return image


def write_confusion_png(confusion, path, names=None) -> None:
    import cv2

    ok, encoded = cv2.imencode(".png", confusion_image(confusion, names))
    with atomic_path(Path(path)) as temporary:
        temporary.write_bytes(encoded.tobytes())
