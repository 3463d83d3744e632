"""Training loop: one config dataclass, ``train(config, train_set, val_set)``, resumable, optionally distributed.

Paper protocol (section 4): Adam lr 1e-4, MSE between the output firing rates and the one-hot label, batch 128,
ReduceLROnPlateau(factor 0.1, patience 5) stepped on the training loss. Datasets yield (frames [T, 2, H, W], label)
and may have ``set_epoch(epoch)`` (random crops that change per epoch).

Exact resume: the data order is a pure function of (seed, epoch) (DistributedSampler, also with one process), and a
checkpoint holds model, optimizer, scheduler, RNG state and the next epoch, so a resumed run replays the same steps.
A kill at any point leaves checkpoints a resume can trust: every file is written whole or not at all (atomic_path),
best.pt / best_test.pt are written before last.pt, and a resume rewrites one that last.pt's history says is missing.
Randomness: a run seeds torch's generators from ``config.seed`` inside ``torch.random.fork_rng``, so the caller's
global RNG state is the same after ``train`` as before; python's and numpy's global generators are not used (the
datasets draw from their own seeded Generators).
Weight average (``config.ema`` > 0): an exponential moving average of the weights, updated after every step
(torch.optim.swa_utils.AveragedModel), whose BatchNorm statistics are measured afresh on ``BATCHNORM_CROPS``
training crops before each validation (SWA's update_bn): an average of the running statistics does not fit an
average of the weights, and spiking layers are sharp (with averaged statistics an average scored 17 % of 48
validation crops where its weights with measured statistics scored 83 %). Validation scores the average and
checkpoints hold it as ``model``, with the trained weights as ``trained`` and the number of averaged steps as
``averaged_steps`` for a resume. Without it, ``model`` is the trained weights.
Distributed: under torchrun (WORLD_SIZE > 1) each rank takes batch_size / world samples of the same global batch;
BatchNorm statistics are synchronised over ranks, so a step equals a one-process step on the global batch.
"""
from __future__ import annotations

import json
import os
import shutil
import time
import warnings
from contextlib import contextmanager
from dataclasses import asdict
from pathlib import Path

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn, update_bn
from torch.utils.data import DataLoader, Dataset, DistributedSampler, Subset

from masnn.checkpoint import checkpoint_dict, load_checkpoint, save_checkpoint
from masnn.datasets.io.writers import atomic_path, remove_stale_temporaries
from masnn.models import create_model
from masnn.shipped import resolve_weights
from masnn.training.config import TrainConfig
from masnn.training.distributed import init_distributed, sync_batchnorm

METRIC_FIELDS = ("epoch", "train_loss", "train_acc", "val_acc", "lr", "output_rate", "samples_per_s", "test_acc")
# The paper reports the best test accuracy over all epochs: the test set picks the epoch, an optimistic figure.
# Available for comparison (train(..., paper_test_set=...)): column test_acc, checkpoint best_test.pt and the
# result's PAPER_BEST_TEST, printed under the PAPER_SELECTION label.
PAPER_BEST_TEST = "paper_best_test_acc"
PAPER_SELECTION = "best test accuracy over epochs (paper's selection: the test set picked the epoch, optimistic)"
BATCHNORM_CROPS = 128  # training crops that measure a weight average's BatchNorm statistics, spread over the set


def class_targets(labels: torch.Tensor, num_classes: int, dtype: torch.dtype) -> torch.Tensor:
    """(B, classes) targets: one-hot rows, and every class equally likely for a sample with no gesture (a
    negative label, masnn.datasets.loaders.gesture.NO_GESTURE)."""
    one_hot = F.one_hot(labels.clamp_min(0), num_classes).to(dtype)
    return torch.where((labels < 0)[:, None], torch.full_like(one_hot, 1.0 / num_classes), one_hot)


LOSSES = {  # (config, output firing rates (B, classes), labels (B,)) -> loss
    "mse": lambda config, rates, labels: F.mse_loss(rates, class_targets(labels, config.num_classes, rates.dtype)),
    "ce": lambda config, rates, labels: F.cross_entropy(rates * config.ce_scale, class_targets(labels, config.num_classes, rates.dtype)),
}
SCHEDULERS = {  # (config, optimizer) -> learning-rate scheduler stepped once an epoch, or None
    "plateau": lambda config, optimizer: torch.optim.lr_scheduler.ReduceLROnPlateau(
        optimizer, factor=config.plateau_factor, patience=config.plateau_patience),
    "cosine": lambda config, optimizer: torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=max(config.epochs, 1)),
    "none": lambda config, optimizer: None,
}
OPTIMIZERS = {"adam": torch.optim.Adam, "adamw": torch.optim.AdamW}


# ---------------------------------------------------------------------------------------------------------------
# random state

def _gpu(device: torch.device) -> int | None:
    """The index of the GPU a run trains on; None on the CPU."""
    if device.type != "cuda":
        return None
    return device.index if device.index is not None else torch.cuda.current_device()


@contextmanager
def _seeded(seed: int, device: torch.device):
    """torch's CPU generator (and the training GPU's) seeded for this run; the caller's states come back after it."""
    gpu = _gpu(device)
    with torch.random.fork_rng(devices=[] if gpu is None else [gpu]):
        torch.random.default_generator.manual_seed(seed)
        if gpu is not None:
            with torch.cuda.device(gpu):
                torch.cuda.manual_seed(seed)
        yield


def _rng_state(device: torch.device) -> dict:
    """The generators a step may draw from; older checkpoints also hold python's and numpy's (unused, ignored)."""
    gpu = _gpu(device)
    return {"torch": torch.get_rng_state(), "cuda": None if gpu is None else torch.cuda.get_rng_state(gpu)}


def _set_rng_state(state: dict, device: torch.device) -> None:
    gpu, saved = _gpu(device), state.get("cuda")
    if isinstance(saved, list):  # older checkpoints: every device's state, this process's device among them
        saved = saved[gpu] if gpu is not None and gpu < len(saved) else None
    torch.set_rng_state(state["torch"].cpu())  # a checkpoint loaded onto the GPU brings its RNG states there too
    if gpu is not None and saved is not None:
        torch.cuda.set_rng_state(saved.cpu(), gpu)


# ---------------------------------------------------------------------------------------------------------------
# the pieces of a run

def _device(config: TrainConfig) -> torch.device:
    if config.device == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        return torch.device("cpu")
    return torch.device(config.device)


def bn_fed_biases(model: nn.Module) -> list[nn.Parameter]:
    """Biases of layers directly followed by a BatchNorm in an nn.Sequential (conv/linear -> BN)."""
    found = []
    for seq in model.modules():
        if isinstance(seq, nn.Sequential):
            for a, b in zip(seq, list(seq)[1:]):
                if isinstance(b, nn.modules.batchnorm._BatchNorm) and getattr(a, "bias", None) is not None:
                    found.append(a.bias)
    return found


def _build(config: TrainConfig, device: torch.device, world: int):
    """(model, optimizer, scheduler) of a fresh run; the model's initial weights come from the current torch RNG."""
    model = create_model(config.model, **{k: v for k, v in config.model_args().items() if k != "name"}).to(device)
    if world > 1:  # before the optimizer: the swap makes new BN parameters
        model = sync_batchnorm(model, device.type == "cuda")  # BN statistics over the global batch, as in one process
    if not config.train_bn_fed_bias:
        for p in bn_fed_biases(model):
            p.requires_grad_(False)
    trained = [p for p in model.parameters() if p.requires_grad]
    optimizer = OPTIMIZERS[config.optimizer](trained, lr=config.lr, weight_decay=config.weight_decay)
    return model, optimizer, SCHEDULERS[config.scheduler](config, optimizer)


def _averaged(config: TrainConfig, model: nn.Module) -> AveragedModel | None:
    """The moving average of ``model``'s weights with decay ``config.ema`` per step; None when 0. Its first
    update copies the weights, so no step is averaged with the initial ones. Its BatchNorm statistics are not
    averaged: ``_measure_batchnorm`` sets them."""
    if not config.ema:
        return None
    return AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(config.ema))


@torch.no_grad()
def _measure_batchnorm(averaged: AveragedModel, train_set: Dataset, config: TrainConfig, device: torch.device) -> None:
    """The average's BatchNorm statistics over ``BATCHNORM_CROPS`` crops spread evenly over the training set (the
    current epoch's draws), every rank alike (synchronised BatchNorm needs them all). Training is not disturbed:
    the pass draws from a forked RNG."""
    crops = Subset(train_set, range(0, len(train_set), max(1, len(train_set) // BATCHNORM_CROPS)))
    loader = DataLoader(crops, batch_size=config.batch_size, num_workers=config.num_workers)
    with torch.random.fork_rng(devices=[] if _gpu(device) is None else [_gpu(device)]):
        update_bn((frames.transpose(0, 1) for frames, _ in loader), averaged.module, device)  # (T, B, C, H, W)


def _restore(path: Path, config: TrainConfig, device: torch.device, model, optimizer, scheduler,
             averaged: AveragedModel | None) -> tuple[int, list, object]:
    """Load the run's last checkpoint into model, average, optimizer, scheduler and RNG; (next epoch, history,
    best). A checkpoint without an average (a run started without one) leaves the average to start afresh."""
    ckpt = load_checkpoint(path, expect=config.model_args(), map_location=device)
    model.load_state_dict(ckpt.get("trained", ckpt["model"]))
    if averaged is not None and "trained" in ckpt:
        averaged.module.load_state_dict(ckpt["model"])
        averaged.n_averaged.fill_(ckpt["averaged_steps"])
    optimizer.load_state_dict(ckpt["optimizer"])
    if scheduler is not None:
        scheduler.load_state_dict(ckpt["scheduler"])
    _set_rng_state(ckpt["rng"], device)
    return ckpt["data"]["epoch"], ckpt["history"], ckpt["best"]


def _resume(out: Path, config: TrainConfig, device: torch.device, model, optimizer, scheduler, averaged,
            rank: int) -> tuple[int, list, object]:
    """``_restore`` from out/last.pt, after which rank 0 makes the kept checkpoints and metrics agree with its
    history; with no last.pt (killed before the first epoch ended) a fresh run, and a warning says so."""
    last = out / "last.pt"
    if not last.exists():
        if rank == 0:
            warnings.warn(f"{last}: nothing to resume, starting a fresh run", stacklevel=4)
        return 0, [], None
    start, history, best = _restore(last, config, device, model, optimizer, scheduler, averaged)
    if rank == 0 and history:
        _repair_kept(out, history)
        _write_metrics(out, history)  # a kill between last.pt and the metrics left them an epoch behind
    return start, history, best


def _held_epoch(path: Path) -> int | None:
    """The epoch a checkpoint holds; None when it is missing or unreadable."""
    try:
        return load_checkpoint(path)["data"].get("epoch") if path.exists() else None
    except (ValueError, KeyError):
        return None


def _repair_kept(out: Path, history: list[dict]) -> None:
    """best.pt and best_test.pt as an uninterrupted run has them after ``history``. A kill between last.pt and one
    of them (runs before best.pt was written first) lost it: when last.pt's epoch is the one it should hold, last.pt
    is that checkpoint; an older one cannot be rebuilt, and a warning says so. One from a later epoch than last.pt
    was written by the epoch the kill interrupted, which the resumed run replays: left as it is."""
    last_epoch = history[-1]["epoch"]
    for name, epoch in _kept_epochs(history).items():
        path = out / name
        held = _held_epoch(path)
        if epoch is None or held == epoch or (held is not None and held > last_epoch):
            continue
        if epoch == last_epoch:
            with atomic_path(path) as temporary:
                shutil.copyfile(out / "last.pt", temporary)
        else:
            warnings.warn(f"{path}: the checkpoint of epoch {epoch} it should hold was lost by an interrupted run "
                          f"({'it holds epoch ' + str(held) if held else 'missing'}); a later better epoch replaces it",
                          stacklevel=5)


def _loader(config: TrainConfig, train_set: Dataset, device: torch.device, rank: int, world: int) -> DataLoader:
    # Data order = f(seed, epoch): DistributedSampler with one replica is a plain seeded shuffle, so resume replays it
    sampler = DistributedSampler(train_set, num_replicas=world, rank=rank, shuffle=True, seed=config.seed)
    return DataLoader(train_set, batch_size=config.batch_size // world, sampler=sampler, num_workers=config.num_workers,
                      generator=torch.Generator(), pin_memory=device.type == "cuda")


def _start_epoch(loader: DataLoader, config: TrainConfig, epoch: int, rank: int) -> None:
    """Point the shuffle, the worker seeds and the dataset's random crops at ``epoch``."""
    loader.sampler.set_epoch(epoch)
    loader.generator.manual_seed(config.seed * 100_003 + epoch * 1_000 + rank)
    if hasattr(loader.dataset, "set_epoch"):
        loader.dataset.set_epoch(epoch)


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


def _progress(enabled: bool):
    """Progress bars on stderr: stdout stays the command's output (`masnn ablate --json` pipes into jq)."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
    return Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                    TextColumn("{task.fields[stats]}"), disable=not enabled, transient=False, console=Console(stderr=True))


# ---------------------------------------------------------------------------------------------------------------
# one epoch

def _train_epoch(config: TrainConfig, net: nn.Module, optimizer, averaged: AveragedModel | None, loader: DataLoader,
                 device: torch.device, world: int, bars, title: str, watched: bool) -> tuple[list[float], float]:
    """One pass over ``loader``: ([loss * n, correct, rate * n, n, n with a gesture] summed over every rank's
    samples, seconds)."""
    autocast = torch.autocast(device.type, torch.bfloat16, enabled=config.amp)
    net.train()
    sums = torch.zeros(5, dtype=torch.float64, device=device)
    steps = bars.add_task(title, total=len(loader), stats="")
    started = time.perf_counter()
    for frames, labels in loader:
        x = frames.to(device, non_blocking=True).transpose(0, 1)  # (B, T, C, H, W) -> (T, B, C, H, W)
        labels = labels.to(device, non_blocking=True)
        with autocast:
            rates = net(x)  # (B, classes)
        loss = LOSSES[config.loss](config, rates.float(), labels)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if averaged is not None:
            averaged.update_parameters(net.module if world > 1 else net)
        n = len(labels)
        sums += torch.stack([loss.detach().double() * n, (rates.argmax(1) == labels).sum().double(),
                             rates.detach().double().mean() * n, sums.new_tensor(n), (labels >= 0).sum().double()])
        if watched:  # tolist() waits for the GPU: only when someone watches
            s = sums.tolist()
            bars.update(steps, advance=1, stats=f"loss {s[0] / s[3]:.4f} acc {s[1] / max(s[4], 1):.3f} rate "
                        f"{s[2] / s[3]:.3f} {s[3] * world / (time.perf_counter() - started):.0f} samples/s")
    if world > 1:
        dist.all_reduce(sums)  # every rank steps its scheduler on the same (global) training loss
    totals = sums.tolist()  # waits for the GPU: the epoch's time (samples/s) is its work's, not its launches'
    seconds = time.perf_counter() - started
    bars.remove_task(steps)
    return totals, seconds


def _step_scheduler(config: TrainConfig, scheduler, train_loss: float) -> None:
    if config.scheduler == "plateau":
        scheduler.step(train_loss)  # the paper's: on the training loss
    elif scheduler is not None:
        scheduler.step()


def _score_epoch(config: TrainConfig, model: nn.Module, device: torch.device, val_set, paper_test_set) -> tuple:
    """(validation accuracy, test accuracy), each None when that split is not given (and on ranks other than 0)."""
    def score(dataset):
        return None if dataset is None else accuracy(model, dataset, config.batch_size, device)
    return score(val_set), score(paper_test_set)


def _metrics_row(epoch: int, sums: list[float], seconds: float, lr: float, val_acc, test_acc) -> dict:
    loss_sum, correct, rate_sum, count, with_gesture = sums
    return {"epoch": epoch + 1, "train_loss": loss_sum / max(count, 1), "train_acc": correct / max(with_gesture, 1),
            "val_acc": val_acc, "lr": lr, "output_rate": rate_sum / max(count, 1), "samples_per_s": count / seconds,
            "test_acc": test_acc}


def _select(row: dict, best) -> tuple[float, bool]:
    """(the best score so far, whether this epoch holds it): the highest validation accuracy with a validation
    split, else the lowest training loss; a tie keeps the earlier epoch."""
    by_val = row["val_acc"] is not None
    score = row["val_acc"] if by_val else row["train_loss"]
    if best is None or (score > best if by_val else score < best):
        return score, True
    return best, False


def _new_best_test(history: list[dict]) -> bool:
    """Whether the newest epoch has the highest test accuracy so far (best_test.pt); a tie keeps the earlier."""
    test_acc = history[-1]["test_acc"]
    return test_acc is not None and test_acc > max((r.get("test_acc") or 0.0 for r in history[:-1]), default=-1.0)


def _kept_epochs(history: list[dict]) -> dict[str, int | None]:
    """The epoch each kept checkpoint should hold, by replaying the selections over the history (None: none yet)."""
    kept, best = {"best.pt": None, "best_test.pt": None}, None
    for n, row in enumerate(history, 1):
        best, improved = _select(row, best)
        if improved:
            kept["best.pt"] = row["epoch"]
        if _new_best_test(history[:n]):
            kept["best_test.pt"] = row["epoch"]
    return kept


def _write_metrics(out: Path, history: list[dict]) -> None:
    lines = [",".join(METRIC_FIELDS)]
    lines += [",".join("" if row.get(k) is None else f"{row[k]:.6g}" for k in METRIC_FIELDS) for row in history]
    for name, text in (("metrics.csv", "\n".join(lines) + "\n"), ("metrics.json", json.dumps(history, indent=1) + "\n")):
        with atomic_path(out / name) as temporary:
            temporary.write_text(text)


def _save_epoch(out: Path, config: TrainConfig, device: torch.device, model, scored, averaged, optimizer, scheduler,
                history: list[dict], best, improved: bool) -> None:
    """best_test.pt on a new best test accuracy, best.pt when it improved, last.pt every epoch; the metrics.
    last.pt comes last: a kill before it leaves the previous last.pt, whose resume replays this epoch and writes
    the others again; a kill after it leaves nothing a resume cannot rebuild (``_repair_kept``). ``scored`` is
    the model validation scored (the average, or ``model``)."""
    average = {} if averaged is None else {"trained": model.state_dict(), "averaged_steps": int(averaged.n_averaged)}
    ckpt = checkpoint_dict(model.model_args, scored.state_dict(), asdict(config), history, best,
                           {"seed": config.seed, "epoch": history[-1]["epoch"]}, optimizer=optimizer.state_dict(),
                           scheduler=scheduler.state_dict() if scheduler is not None else None, rng=_rng_state(device),
                           **average)
    if _new_best_test(history):
        save_checkpoint(ckpt, out / "best_test.pt")
    if improved:
        save_checkpoint(ckpt, out / "best.pt")
    save_checkpoint(ckpt, out / "last.pt")
    _write_metrics(out, history)


# ---------------------------------------------------------------------------------------------------------------
# the run

def train(config: TrainConfig, train_set: Dataset, val_set: Dataset | None = None, progress: bool = True,
          resume: bool = False, paper_test_set: Dataset | None = None) -> dict:
    """Train ``config.epochs`` epochs; checkpoints (last.pt, best.pt) and metrics go to ``config.out_dir``.
    best (returned and in checkpoints) = highest validation accuracy with a val_set, else lowest training loss.
    ``resume`` continues from out_dir/last.pt exactly (same weights as an uninterrupted run); with no last.pt there
    (a run killed in its first epoch) it starts a fresh run and warns. Returns the last
    epoch's metrics plus "best" and "history" (on rank 0; other ranks get their own training metrics and no val_acc).
    ``paper_test_set``: the test split scored every epoch (column test_acc); the best epoch on it is kept as
    best_test.pt and its accuracy returned under PAPER_BEST_TEST, never mixed with the honest selection.
    The global RNG states are as they were when this returns."""
    device = _device(config)
    rank, world, started = init_distributed(device)
    try:
        if rank != 0:  # rank 0 scores and saves; the others only train
            val_set = paper_test_set = None
        with _seeded(config.seed, device):  # the same initial weights on every rank
            return _train(config, train_set, val_set, paper_test_set, progress and rank == 0, resume, device, rank, world)
    finally:
        if started:
            dist.destroy_process_group()


def _train(config, train_set, val_set, paper_test_set, progress, resume, device, rank, world) -> dict:
    if config.batch_size % world:
        raise ValueError(f"batch_size {config.batch_size} does not split over {world} ranks")
    out = Path(config.out_dir)
    if rank == 0:
        out.mkdir(parents=True, exist_ok=True)
        remove_stale_temporaries(out)  # checkpoints a killed run was writing; a live run's are kept
    model, optimizer, scheduler = _build(config, device, world)
    averaged = _averaged(config, model)
    scored = model if averaged is None else averaged.module  # what validation scores and checkpoints call the model
    start, history, best = (_resume(out, config, device, model, optimizer, scheduler, averaged, rank) if resume
                            else (0, [], None))
    if config.init and start == 0:  # a fresh run; a resumed one goes on from last.pt's weights
        # the average copies the weights at its first update, so it starts from these too
        model.load_state_dict(load_checkpoint(resolve_weights(config.init), expect=config.model_args(), map_location=device)["model"])
    net = model if world == 1 else nn.parallel.DistributedDataParallel(
        model, device_ids=[device.index] if device.type == "cuda" else None)
    loader = _loader(config, train_set, device, rank, world)
    row = history[-1] if history else {}
    with _progress(progress) as bars:
        epochs = bars.add_task("epochs", total=config.epochs, completed=start, stats="")
        for epoch in range(start, config.epochs):
            _start_epoch(loader, config, epoch, rank)
            sums, seconds = _train_epoch(config, net, optimizer, averaged, loader, device, world, bars, f"epoch {epoch + 1}",
                                         progress)
            lr = optimizer.param_groups[0]["lr"]  # the rate this epoch trained with
            if averaged is not None:
                _measure_batchnorm(averaged, train_set, config, device)
            row = _metrics_row(epoch, sums, seconds, lr, *_score_epoch(config, scored, device, val_set, paper_test_set))
            _step_scheduler(config, scheduler, row["train_loss"])
            history.append(row)
            if rank == 0:
                best, improved = _select(row, best)
                _save_epoch(out, config, device, model, scored, averaged, optimizer, scheduler, history, best, improved)
            val = "" if row["val_acc"] is None else f" val {row['val_acc']:.3f}"
            bars.update(epochs, advance=1, stats=f"loss {row['train_loss']:.4f} acc {row['train_acc']:.3f}{val} lr {lr:.2g}")
    if world > 1:
        dist.barrier()  # rank 0's last checkpoint is on disk before any rank returns
    result = {**row, "best": best, "history": history}
    if paper_test_set is not None:
        result[PAPER_BEST_TEST] = max(r["test_acc"] for r in history if r.get("test_acc") is not None)
    return result
