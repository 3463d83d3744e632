"""Training loop: one config dataclass, ``train(config, train_set, val_set)``, resumable, optionally distributed.

Paper protocol (section 4): Adam lr 1e-4, MSE between the output firing rates and the one-hot label, batch 128,
ReduceLROnPlateau(factor 0.1, patience 5) stepped on the training loss. Datasets yield (frames [T, 2, H, W], label)
and may have ``set_epoch(epoch)`` (random crops that change per epoch).

Exact resume: the data order is a pure function of (seed, epoch) (DistributedSampler, also with one process), and a
checkpoint holds model, optimizer, scheduler, RNG states and the next epoch, so a resumed run replays the same steps.
Distributed: under torchrun (WORLD_SIZE > 1) each rank takes batch_size / world samples of the same global batch;
BatchNorm statistics are synchronised over ranks, so a step equals a one-process step on the global batch.
"""
from __future__ import annotations

import json
import os
import random
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
from masnn.checkpoint import checkpoint_dict, load_checkpoint, save_checkpoint
from masnn.models import create_model
from masnn.training.config import TrainConfig
from masnn.training.distributed import init_distributed, sync_batchnorm
from torch import nn
from torch.utils.data import DataLoader, Dataset, DistributedSampler

METRIC_FIELDS = ("epoch", "train_loss", "train_acc", "val_acc", "lr", "output_rate", "samples_per_s", "test_acc")
# The paper reports the best test accuracy over all epochs: the test set picks the epoch, an optimistic figure.
# Available for comparison (train(..., paper_test_set=...)); its column, checkpoint and result are named so.
PAPER_SELECTION = "best test accuracy over epochs (paper's selection: the test set picked the epoch, optimistic)"


def _rng_state() -> dict:
    version, keys, gauss = random.getstate()
    name, np_keys, pos, has_gauss, cached = np.random.get_state(legacy=True)
    return {"python": [version, list(keys), gauss],
            "numpy": [name, torch.from_numpy(np_keys.astype(np.int64)), pos, has_gauss, cached],
            "torch": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else []}


def _set_rng_state(state: dict) -> None:
    version, keys, gauss = state["python"]
    random.setstate((version, tuple(keys), gauss))
    name, np_keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((name, np_keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _device(config: TrainConfig) -> torch.device:
    if config.device == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        return torch.device("cpu")
    return torch.device(config.device)


# ---------------------------------------------------------------------------------------------------------------
# training

def _loss(config: TrainConfig, rates: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    if config.loss == "mse":
        return F.mse_loss(rates, F.one_hot(labels, config.num_classes).to(rates.dtype))
    return F.cross_entropy(rates * config.ce_scale, labels)


def bn_fed_biases(model: nn.Module) -> list[nn.Parameter]:
    """Biases of layers directly followed by a BatchNorm in an nn.Sequential (conv/linear -> BN)."""
    found = []
    for seq in model.modules():
        if isinstance(seq, nn.Sequential):
            for a, b in zip(seq, list(seq)[1:]):
                if isinstance(b, nn.modules.batchnorm._BatchNorm) and getattr(a, "bias", None) is not None:
                    found.append(a.bias)
    return found


def _optimizer(config: TrainConfig, model: nn.Module) -> torch.optim.Optimizer:
    if not config.train_bn_fed_bias:
        for p in bn_fed_biases(model):
            p.requires_grad_(False)
    cls = {"adam": torch.optim.Adam, "adamw": torch.optim.AdamW}[config.optimizer]
    return cls([p for p in model.parameters() if p.requires_grad], lr=config.lr, weight_decay=config.weight_decay)


def _scheduler(config: TrainConfig, optimizer: torch.optim.Optimizer):
    if config.scheduler == "plateau":
        return torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, factor=config.plateau_factor,
                                                          patience=config.plateau_patience)
    if config.scheduler == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=max(config.epochs, 1))
    return None


@torch.no_grad()
def accuracy(model: nn.Module, dataset: Dataset, batch_size: int, device: torch.device, num_workers: int = 0) -> float:
    """Accuracy of argmax(firing rates) over the items of ``dataset`` (ties go to the lowest class)."""
    was_training = model.training
    model.eval()
    correct = total = 0
    for frames, labels in DataLoader(dataset, batch_size=batch_size, num_workers=num_workers):
        rates = model(frames.to(device).transpose(0, 1))  # (B, T, C, H, W) -> (T, B, C, H, W)
        correct += (rates.argmax(1).cpu() == labels).sum().item()
        total += len(labels)
    model.train(was_training)
    return correct / max(total, 1)


def _write_metrics(out: Path, history: list[dict]) -> None:
    lines = [",".join(METRIC_FIELDS)]
    lines += [",".join("" if row.get(k) is None else f"{row[k]:.6g}" for k in METRIC_FIELDS) for row in history]
    (out / "metrics.csv").write_text("\n".join(lines) + "\n")
    (out / "metrics.json").write_text(json.dumps(history, indent=1) + "\n")


def _progress(enabled: bool):
    """Progress bars on stderr: stdout stays the command's output (`masnn ablate --json` pipes into jq)."""
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
    )
    return Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                    TextColumn("{task.fields[stats]}"), disable=not enabled, transient=False, console=Console(stderr=True))


def train(config: TrainConfig, train_set: Dataset, val_set: Dataset | None = None, progress: bool = True,
          resume: bool = False, paper_test_set: Dataset | None = None) -> dict:
    """Train ``config.epochs`` epochs; checkpoints (last.pt, best.pt) and metrics go to ``config.out_dir``.
    best (returned and in checkpoints) = highest validation accuracy with a val_set, else lowest training loss. ``resume`` continues from
    out_dir/last.pt exactly (same weights as an uninterrupted run). Returns the last epoch's metrics plus
    "best" and "history" (on rank 0; other ranks get their own training metrics and no val_acc).
    ``paper_test_set``: the test split scored every epoch (column test_acc); the best epoch on it is kept as
    best_test.pt and returned under PAPER_SELECTION, never mixed with the honest selection."""
    device = _device(config)
    rank, world, started = init_distributed(device)
    try:
        return _train(config, train_set, val_set, progress and rank == 0, resume, device, rank, world, paper_test_set)
    finally:
        if started:
            dist.destroy_process_group()


def _train(config, train_set, val_set, progress, resume, device, rank, world, paper_test_set=None) -> dict:
    if config.batch_size % world:
        raise ValueError(f"batch_size {config.batch_size} does not split over {world} ranks")
    out = Path(config.out_dir)
    if rank == 0:
        out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(config.seed)  # the same initial weights on every rank
    random.seed(config.seed)
    np.random.seed(config.seed)
    model = create_model(config.model, **{k: v for k, v in config.model_args().items() if k != "name"}).to(device)
    if world > 1:  # before the optimizer: the swap makes new BN parameters
        model = sync_batchnorm(model, device.type == "cuda")  # BN statistics over the global batch, as in one process
    optimizer = _optimizer(config, model)
    scheduler = _scheduler(config, optimizer)
    start, history, best = 0, [], None
    if resume:
        ckpt = load_checkpoint(out / "last.pt", expect=config.model_args(), map_location=device)
        model.load_state_dict(ckpt["model"])
        optimizer.load_state_dict(ckpt["optimizer"])
        if scheduler is not None:
            scheduler.load_state_dict(ckpt["scheduler"])
        _set_rng_state(ckpt["rng"])
        start, history, best = ckpt["data"]["epoch"], ckpt["history"], ckpt["best"]
    net = model
    if world > 1:
        net = nn.parallel.DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
    # Data order = f(seed, epoch): DistributedSampler with one replica is a plain seeded shuffle, so resume replays it
    sampler = DistributedSampler(train_set, num_replicas=world, rank=rank, shuffle=True, seed=config.seed)
    loader_rng = torch.Generator()  # worker seeds, reseeded per epoch
    loader = DataLoader(train_set, batch_size=config.batch_size // world, sampler=sampler,
                        num_workers=config.num_workers, generator=loader_rng, pin_memory=device.type == "cuda")
    autocast = torch.autocast("cuda", torch.bfloat16, enabled=config.amp and device.type == "cuda")
    row = history[-1] if history else {}
    with _progress(progress) as bars:
        epochs = bars.add_task("epochs", total=config.epochs, completed=start, stats="")
        for epoch in range(start, config.epochs):
            sampler.set_epoch(epoch)
            loader_rng.manual_seed(config.seed * 100_003 + epoch * 1_000 + rank)
            if hasattr(train_set, "set_epoch"):
                train_set.set_epoch(epoch)
            net.train()
            sums = torch.zeros(4, dtype=torch.float64, device=device)  # loss * n, correct, rate * n, n
            steps = bars.add_task(f"epoch {epoch + 1}", total=len(loader), stats="")
            t0 = time.perf_counter()
            for frames, labels in loader:
                x = frames.to(device, non_blocking=True).transpose(0, 1)  # (B, T, C, H, W) -> (T, B, C, H, W)
                labels = labels.to(device, non_blocking=True)
                with autocast:
                    rates = net(x)  # (B, classes)
                loss = _loss(config, rates.float(), labels)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                n = len(labels)
                sums += torch.stack([loss.detach().double() * n, (rates.argmax(1) == labels).sum().double(),
                                     rates.detach().double().mean() * n, sums.new_tensor(n)])
                if progress:  # tolist() waits for the GPU: only when someone watches
                    s = sums.tolist()
                    bars.update(steps, advance=1, stats=f"loss {s[0] / s[3]:.4f} acc {s[1] / s[3]:.3f} rate "
                                f"{s[2] / s[3]:.3f} {s[3] * world / (time.perf_counter() - t0):.0f} samples/s")
            if world > 1:
                dist.all_reduce(sums)  # every rank steps its scheduler on the same (global) training loss
            seconds = time.perf_counter() - t0
            loss_sum, correct, rate_sum, count = sums.tolist()
            train_loss = loss_sum / max(count, 1)
            lr = optimizer.param_groups[0]["lr"]  # the rate this epoch trained with
            if scheduler is not None:
                scheduler.step(train_loss) if config.scheduler == "plateau" else scheduler.step()
            val_acc = accuracy(model, val_set, config.batch_size, device) if val_set is not None and rank == 0 else None
            test_acc = accuracy(model, paper_test_set, config.batch_size, device) if paper_test_set is not None and rank == 0 else None
            row = {"epoch": epoch + 1, "train_loss": train_loss, "train_acc": correct / max(count, 1),
                   "val_acc": val_acc, "lr": lr, "output_rate": rate_sum / max(count, 1),
                   "samples_per_s": count / seconds, "test_acc": test_acc}
            history.append(row)
            score = val_acc if val_set is not None else train_loss
            improved = rank == 0 and (best is None or (score > best if val_set is not None else score < best))
            if improved:
                best = score
            if rank == 0:
                ckpt = checkpoint_dict(model.model_args, model.state_dict(), asdict(config), history, best,
                                   {"seed": config.seed, "epoch": epoch + 1}, optimizer=optimizer.state_dict(),
                                   scheduler=scheduler.state_dict() if scheduler is not None else None, rng=_rng_state())
                save_checkpoint(ckpt, out / "last.pt")
                if improved:
                    save_checkpoint(ckpt, out / "best.pt")
                if test_acc is not None and test_acc > max((r.get("test_acc") or 0.0 for r in history[:-1]), default=-1.0):
                    save_checkpoint(ckpt, out / "best_test.pt")
                _write_metrics(out, history)
            bars.remove_task(steps)
            val = "" if val_acc is None else f" val {val_acc:.3f}"
            bars.update(epochs, advance=1, stats=f"loss {train_loss:.4f} acc {row['train_acc']:.3f}{val} lr {lr:.2g}")
    if world > 1:
        dist.barrier()  # rank 0's last checkpoint is on disk before any rank returns
    result = {**row, "best": best, "history": history}
    if paper_test_set is not None and rank == 0:
        result[PAPER_SELECTION] = max(r["test_acc"] for r in history if r.get("test_acc") is not None)
    return result
