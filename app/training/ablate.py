"""`masnn ablate`: vanilla and every attention combination, trained and evaluated alike (the paper's Table 6).

Each variant is trained with the same configuration, data and seeds, selected on the validation users,
then scored once on the test split; rEE is each variant's energy against the vanilla model of the same
seed on the same windows. Several seeds give a mean and a standard deviation.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np

from masnn.checkpoint import framing_config, load_checkpoint
from masnn.datasets.loaders.augmented import training_set
from masnn.datasets.loaders.cache import FrameCache, FrameDataset
from masnn.training.config import TrainConfig
from masnn.training.evaluate import evaluate
from masnn.training.loop import train

COMBINATIONS = ("none", "T", "C", "S", "TC", "TS", "CS", "TCS")


def run_ablation(config: TrainConfig, train_samples, val_samples, test_samples, cache: FrameCache | None = None,
                 attentions=COMBINATIONS, seeds=(0,), n_crops: int = 10, progress: bool = False) -> list[dict]:
    """One row per attention variant: mean and std over seeds of accuracy (both protocols), NASAR, spikes, rEE."""
    if "none" not in attentions:
        attentions = ("none", *attentions)  # rEE needs the vanilla model
    results = {name: [] for name in attentions}
    for seed in seeds:
        checkpoints = {}
        for name in attentions:
            out = Path(config.out_dir) / f"{name}-seed{seed}"
            variant = dataclasses.replace(config, attention=name, seed=seed, out_dir=str(out))
            framing = framing_config(variant.framing, variant.T)
            train_set = training_set(train_samples, framing, variant.augment, seed, cache, variant.no_gesture,  # as the config says
                                     variant.time_reversal, variant.class_names)
            val_set = FrameDataset(val_samples, framing, "random-crop", seed=seed + 1, cache=cache) if val_samples else None
            train(variant, train_set, val_set, progress=progress)
            checkpoints[name] = out / "best.pt"
        for name in attentions:
            report = evaluate(checkpoints[name], test_samples, n_crops, cache, vanilla_path=checkpoints["none"])
            results[name].append({
                "vote": report["accuracy"]["vote"],
                "single": report["accuracy"]["single"],
                "nasar": report["per_crop_mean"]["nasar"],
                "spikes": report["per_crop_mean"]["spikes"],
                "ree": report["per_crop_mean"]["ree_vs_vanilla"],
                "epochs_trained": len(load_checkpoint(checkpoints[name])["history"]),
            })
    rows = []
    for name, runs in results.items():
        row = {"attention": name, "seeds": len(runs)}
        for key in ("vote", "single", "nasar", "spikes", "ree"):
            values = np.array([run[key] for run in runs], dtype=float)
            row[key] = float(values.mean())
            row[f"{key}_std"] = float(values.std())
        rows.append(row)
    return rows
