"""`masnn bench gpu`, the distributed group: a torchrun run of ``train`` (NCCL on GPUs, gloo on the CPU) against a
one-process run on the same global batch.

The loop's claim (``masnn.training.loop``): under torchrun each rank takes batch / world samples of the same global
batch and BatchNorm statistics are synchronised, so a step equals a one-process step. Both runs train ``EPOCHS``
epochs of one step from the same seed; then each epoch's loss must agree within ``LOSS_RTOL`` (summation order
only), BatchNorm's running statistics within ``STATS_RTOL``, and at most ``MOVED_FRACTION`` of the weights may have
moved differently by more than a tenth of the learning rate (Adam's steps are about lr each; a weight whose
gradient is rounding noise can step either way in either run).
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import torch

from masnn.bench.gpu import CheckResult, Context, skipped

WORLD = 2
EPOCHS = 2
LR = 1e-3
LOSS_RTOL = 1e-3
STATS_RTOL = 1e-3
MOVED_FRACTION = 1e-3
TIMEOUT_S = 300


def _config(plan, device: str, out_dir: Path):
    from masnn.bench.gpu_model import train_config

    return train_config(plan, device, out_dir, epochs=EPOCHS, lr=LR, batch_size=plan.batch - plan.batch % WORLD)


def train_once(plan_name: str, device: str, out_dir: Path) -> dict:
    """One run (a rank of a torchrun run, or the one process): ``EPOCHS`` epochs of one step on one global batch."""
    from masnn.bench.gpu import PLANS
    from masnn.bench.gpu_model import RandomFrames
    from masnn.training.loop import train

    plan = PLANS[plan_name]
    config = _config(plan, device, out_dir)
    return train(config, RandomFrames(config.batch_size, plan.T, plan.input_size), progress=False)


def compare_runs(one: dict, many: dict, lr: float = LR) -> tuple[bool, dict, str]:
    """``one`` and ``many``: {"losses": [...], "state": state_dict} of the one-process and the torchrun run."""
    losses = [abs(a - b) / max(abs(a), 1e-12) for a, b in zip(one["losses"], many["losses"])]
    moved = total = stats_off = 0
    for key, a in one["state"].items():
        b = many["state"].get(key)
        if b is None or a.shape != b.shape:
            return False, {"key": key}, f"{key}: missing or of another shape in the torchrun run's weights"
        if not a.is_floating_point():
            continue
        difference = (a.float() - b.float()).abs()
        if "running_" in key:
            stats_off += int((difference > STATS_RTOL * a.abs() + 1e-6).sum())
        else:
            moved += int((difference > 0.1 * lr).sum())
            total += a.numel()
    figures = {"loss_relative_differences": losses, "weights_moved_differently": moved, "weights": total,
               "bn_statistics_off": stats_off, "world": WORLD}
    if len(one["losses"]) != len(many["losses"]) or max(losses, default=0.0) > LOSS_RTOL:
        return False, figures, f"losses differ: one process {one['losses']}, torchrun {many['losses']}"
    if stats_off:
        return False, figures, f"{stats_off} BatchNorm running statistics differ (not synchronised over ranks?)"
    if moved > MOVED_FRACTION * max(total, 1):
        return False, figures, f"{moved} of {total} weights moved differently by more than lr / 10"
    return True, figures, ""


def _load(out_dir: Path) -> dict:
    from masnn.checkpoint import load_checkpoint

    ckpt = load_checkpoint(out_dir / "last.pt")
    return {"losses": [row["train_loss"] for row in ckpt["history"]], "state": ckpt["model"]}


def distributed_group(ctx: Context) -> list[CheckResult]:
    name = "torchrun vs one process"
    gpus = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if ctx.device.type == "cuda" and gpus < WORLD:
        return [skipped(name, "distributed", f"{gpus} GPU here: the torchrun/NCCL step needs {WORLD} or more")]
    if ctx.device.type == "cpu" and not ctx.plan.cpu_distributed:
        return [skipped(name, "distributed", "this plan runs no distributed step on the CPU")]
    backend = "nccl" if ctx.device.type == "cuda" else "gloo"
    many_dir, one_dir = ctx.workdir / "dist-torchrun", ctx.workdir / "dist-one"
    device = "auto" if ctx.device.type == "cuda" else "cpu"  # "auto": each rank takes cuda:LOCAL_RANK
    args = json.dumps({"plan": ctx.plan.name, "device": device, "out": str(many_dir)})
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={WORLD}",
               "-m", "masnn.bench.gpu_dist", args]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=TIMEOUT_S)
    if done.returncode != 0:
        tail = " ".join(done.stderr.strip().splitlines()[-3:])[-300:]
        return [CheckResult(name, "distributed", False, f"torchrun failed ({backend})", detail=f"exit {done.returncode}: {tail}")]
    train_once(ctx.plan.name, str(ctx.device), one_dir)
    passed, figures, why = compare_runs(_load(one_dir), _load(many_dir))
    figures["backend"] = backend
    summary = why or (f"{WORLD} ranks ({backend}) = one process: losses within "
                      f"{max(figures['loss_relative_differences']):.1e}, BatchNorm statistics synchronised, "
                      f"{figures['weights_moved_differently']} of {figures['weights']} weights apart by > lr/10")
    return [CheckResult(name, "distributed", passed, summary, figures, detail=why)]


if __name__ == "__main__":  # a rank under torchrun
    options = json.loads(sys.argv[1])
    train_once(options["plan"], options["device"], Path(options["out"]))
