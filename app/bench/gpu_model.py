"""`masnn bench gpu`, the network groups: training steps, the data loader, inference.

Training: ``masnn.training.loop.train`` itself (device, seeding, pinned loader, autocast, checkpoints), the 3-layer
TCSA net at ``plan.T`` (60) and ``plan.batch`` (32), ``plan.epochs`` epochs of ``plan.train_steps`` steps on the same
random event-count frames, once in float32 and once under bf16 autocast. Samples/s come from the last epoch (the
first holds the warm-up: cuDNN's choices, Triton's compiles). Losses agree within ``LOSS_RTOL``: bf16 rounds the
synapses' outputs, which flips spikes that sit on the threshold, so the losses differ by a few percent at most.

Loader: FrameDataset with a FrameCache over synthetic AEDAT 3.1 recordings (a blob circling the sensor), random
crops of T x 15 ms at the model's input size through a DataLoader of ``plan.batch``: samples/s with a cold cache
(framing every sample; workers starting) and a warm one (memory-mapped reads; best of three passes), against the
training's samples/s.

Inference: a random 3-layer TCSA net with BatchNorm gains raised so every layer spikes (a silent network would
agree with anything), T = 60: latency of one window at batch 1, samples/s at ``plan.inference_batch``, and the
predictions on ``plan.agreement_samples`` windows of the synthetic recordings against the CPU inference copy
(``prepare_for_inference``). TF32 is off for that comparison (and its agreement with TF32 on, torch's default for
convolutions, is reported). At most ``MAX_FLIPPED`` of the predictions may differ: another summation order can
flip a spike on the threshold, the flip spreads through the later layers, and output rates are multiples of 1 / T,
so near ties are common. On the CPU the inference copy (BatchNorm folded: other roundings) disagreed with the dense
model on 1 of 32 windows of this random model at T = 60, rates up to 4 spikes apart, with the top two rates within
one spike on 9 of the 32. A wrong kernel disagrees on most. The shipped model goes through ``Classifier`` on the
device and on the CPU.
"""
from __future__ import annotations

import contextlib
import copy
import math
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from masnn.bench.gpu import CheckResult, Context, peak_memory_mb, reset_peak_memory, skipped, synchronize, timed

LOSS_RTOL = 0.05
MAX_FLIPPED = 0.1  # at most 3 in 32
LR = 1e-4  # the paper's
DT_US = 15_000  # the paper's frame: 60 x 15 ms = one 0.9 s window


def event_frames(n: int, steps: int, size: int, seed: int = 0, density: float = 0.05) -> torch.Tensor:
    """Random event counts [n, T, 2, size, size] (float32): ``density`` of the pixels hold 1 to 3 events."""
    g = torch.Generator().manual_seed(seed)
    shape = (n, steps, 2, size, size)
    return (torch.rand(shape, generator=g) < density).float() * torch.randint(1, 4, shape, generator=g).float()


class RandomFrames(Dataset):
    """Items (frames [T, 2, size, size], label), the same for every run with the same seed."""

    def __init__(self, n: int, steps: int, size: int, classes: int = 11, seed: int = 0):
        self.frames = event_frames(n, steps, size, seed)
        self.labels = torch.randint(0, classes, (n,), generator=torch.Generator().manual_seed(seed + 1)).tolist()

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int):
        return self.frames[i], self.labels[i]


def train_config(plan, device: str, out_dir: Path, amp: bool = False, **changes):
    from masnn.training.config import TrainConfig

    values = dict(model="ma-snn-3layer", attention="TCS", placement="paper", T=plan.T, num_classes=11,
                  model_kwargs={"input_size": plan.input_size}, framing={"dt_us": DT_US, "size": plan.input_size},
                  epochs=plan.epochs, batch_size=plan.batch, lr=LR,
                  scheduler="none", device=device, amp=amp, out_dir=str(out_dir), num_workers=0)
    return TrainConfig(**{**values, **changes})


def run_training(plan, device: torch.device, workdir: Path, amp: bool) -> dict:
    """One ``train`` run: per-epoch losses, the last epoch's samples/s, peak GPU memory (MB; None on the CPU)."""
    from masnn.training.loop import train

    label = "bf16" if amp else "fp32"
    dataset = RandomFrames(plan.batch * plan.train_steps, plan.T, plan.input_size)
    reset_peak_memory(device)
    result = train(train_config(plan, str(device), workdir / f"train-{label}", amp), dataset, progress=False)
    synchronize(device)
    history = result["history"]
    return {"losses": [row["train_loss"] for row in history], "samples_per_s": history[-1]["samples_per_s"],
            "peak_mb": peak_memory_mb(device), "autocast": "bf16" if amp and device.type == "cuda" else "off"}


def compare_losses(fp32: list[float], bf16: list[float], rtol: float = LOSS_RTOL) -> tuple[bool, dict, str]:
    """Each epoch's loss under bf16 autocast within ``rtol`` of float32's; both finite."""
    if len(fp32) != len(bf16) or not fp32:
        return False, {}, f"{len(fp32)} fp32 epochs against {len(bf16)} bf16 epochs"
    differences = [abs(b - a) / abs(a) if a else math.inf for a, b in zip(fp32, bf16)]
    figures = {"fp32": fp32, "bf16": bf16, "relative_differences": differences, "rtol": rtol}
    if not all(math.isfinite(v) for v in fp32 + bf16):
        return False, figures, f"a loss is not finite (fp32 {fp32}, bf16 {bf16})"
    worst = max(differences)
    if worst > rtol:
        return False, figures, f"bf16 loss differs from fp32 by {100 * worst:.1f}% (tolerance {100 * rtol:.0f}%)"
    return True, figures, ""


def _training_line(run: dict) -> str:
    memory = f", peak {run['peak_mb']:.0f} MB" if run["peak_mb"] is not None else ""
    return f"{run['samples_per_s']:.0f} samples/s{memory}, autocast {run['autocast']}, losses " + \
        ", ".join(f"{v:.4f}" for v in run["losses"])


def training_group(ctx: Context) -> list[CheckResult]:
    plan, device = ctx.plan, ctx.device
    runs = {amp: run_training(plan, device, ctx.workdir, amp) for amp in (False, True)}
    where = f"T={plan.T}, batch {plan.batch}, {plan.input_size}x{plan.input_size}"
    results = [CheckResult(f"train {label}", "training", None, f"{where}: {_training_line(runs[amp])}", runs[amp])
               for amp, label in ((False, "fp32"), (True, "bf16"))]
    passed, figures, why = compare_losses(runs[False]["losses"], runs[True]["losses"])
    note = "" if device.type == "cuda" else " (the loop's autocast is CUDA-only: both ran in fp32 here)"
    worst = max(figures.get("relative_differences") or [math.nan])
    results.append(CheckResult("train bf16 vs fp32", "training", passed,
                               why or f"losses within {100 * worst:.2f}% (tolerance {100 * LOSS_RTOL:.0f}%){note}",
                               figures, detail=why))
    return results


# ---------------------------------------------------------------------------------------------------------------
# loader

def synthetic_samples(folder: Path, plan) -> list:
    """``plan.recordings`` AEDAT 3.1 recordings of a blob circling a DVS128 (written once per folder), as Samples."""
    from masnn.bench.common import moving_blob_events
    from masnn.datasets.io.writers import write_aedat31
    from masnn.datasets.loaders.cache import Sample

    folder.mkdir(parents=True, exist_ok=True)
    duration = int(plan.recording_s * 1e6)
    samples = []
    for i in range(plan.recordings):
        path, t0 = folder / f"blob{i:03d}.aedat", 1_000_000 * i
        if not path.exists():
            write_aedat31(path, moving_blob_events(int(plan.events_per_s * plan.recording_s), duration, seed=i, t0=t0))
        samples.append(Sample(str(path), i % 11, t0, t0 + duration, f"{i:03d}"))
    return samples


def framing(plan, steps: int | None = None):
    from masnn.datasets.transforms.pipeline import FramingConfig

    return FramingConfig(dt_us=DT_US, n_frames=steps or plan.T, size=plan.input_size)


def loader_rates(samples: list, config, cache_dir: Path, batch: int, workers: int, passes: int = 4) -> list[float]:
    """Samples/s of each pass over a DataLoader of random crops; the first pass fills the frame cache (and starts
    the workers, which stay for the later passes)."""
    import time

    from masnn.datasets.loaders.cache import FrameCache, FrameDataset

    dataset = FrameDataset(samples, config, "random-crop", cache=FrameCache(cache_dir))
    loader = DataLoader(dataset, batch_size=batch, shuffle=True, num_workers=workers, persistent_workers=workers > 0,
                        generator=torch.Generator().manual_seed(0))
    rates = []
    for epoch in range(passes):
        dataset.set_epoch(epoch)
        start, n = time.perf_counter(), 0
        for frames, _ in loader:
            n += len(frames)
        rates.append(n / (time.perf_counter() - start))
    return rates


def loader_verdict(warm: float, model: float | None) -> str:
    if model is None:
        return "no training throughput to compare with (the training group did not run)"
    ratio = warm / model
    return (f"keeps the model busy ({ratio:.1f}x its {model:.0f} samples/s)" if ratio >= 1 else
            f"the bottleneck: {ratio:.2f}x the model's {model:.0f} samples/s")


def loader_group(ctx: Context) -> list[CheckResult]:
    plan = ctx.plan
    samples = synthetic_samples(ctx.workdir / "recordings", plan)
    model = ctx.figure("train fp32", "samples_per_s")
    results = []
    for workers in plan.loader_workers:
        cold, *warm = loader_rates(samples, framing(plan), ctx.workdir / f"cache-{workers}", plan.batch, workers)
        warm = max(warm)
        figures = {"workers": workers, "cold_samples_per_s": cold, "warm_samples_per_s": warm,
                   "model_samples_per_s": model, "model_bf16_samples_per_s": ctx.figure("train bf16", "samples_per_s")}
        results.append(CheckResult(f"loader, {workers} workers", "loader", None,
                                   f"cold cache {cold:.0f}, warm {warm:.0f} samples/s: {loader_verdict(warm, model)}",
                                   figures))
    return results


# ---------------------------------------------------------------------------------------------------------------
# inference

def active_model(plan, device: torch.device, seed: int = 0):
    """A random 3-layer TCSA net in eval mode on ``device`` in which every layer spikes: BatchNorm's running
    statistics are those of two batches of event frames (a cumulative average, not the default momentum's
    partial one, which leaves the deeper layers silent) and its gains are x4."""
    from masnn.models import create_model

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = create_model("ma-snn-3layer", attention="TCS", placement="paper", T=plan.T, num_classes=11,
                             input_size=plan.input_size)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
                module.weight.mul_(4.0)
                module.momentum = None
        model.to(device).train()
        for i in range(2):
            model(event_frames(8, plan.T, plan.input_size, seed=seed + i).transpose(0, 1).to(device))
        for module in model.modules():
            if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
                module.momentum = 0.1
    return model.eval()


def window_batch(samples: list, config, n: int) -> torch.Tensor:
    """[T, n, 2, H, W] windows of the recordings, cycling over them at several offsets."""
    from masnn.datasets.loaders.cache import frame_window

    windows = []
    for i in range(n):
        s = samples[i % len(samples)]
        start = s.start_us + (i // len(samples)) * config.dt_us
        windows.append(torch.from_numpy(frame_window(s.path, config, start, s.end_us, config.n_frames).astype(np.float32)))
    return torch.stack(windows, 1)


@contextlib.contextmanager
def strict_fp32():
    """TF32 off for cuDNN and matmuls (float32 as the CPU computes it), restored after."""
    saved = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = saved


def compare_predictions(ours: torch.Tensor, ref: torch.Tensor, max_flipped: float = MAX_FLIPPED,
                        active: torch.Tensor | None = None) -> tuple[bool, dict, str]:
    """Output rates [B, classes] of the device against the CPU copy's: at most ``max_flipped`` of the argmaxes differ,
    and the reference is not silent (a silent network agrees with anything). ``active``: which samples made the
    reference fire (default: those with a rate above 0)."""
    same = (ours.argmax(-1) == ref.argmax(-1)).float()
    active = float(((ref.sum(-1) > 0) if active is None else active).float().mean())
    figures = {"same_prediction": float(same.mean()), "differing": int((1 - same).sum()), "samples": len(same),
               "max_rate_difference": float((ours - ref).abs().max()), "active_samples": active}
    if active < 0.5:
        return False, figures, f"the reference is silent on {100 * (1 - active):.0f}% of the inputs: the comparison means nothing"
    if figures["differing"] > max_flipped * len(same):
        return False, figures, f"{figures['differing']} of {len(same)} predictions differ from the CPU copy's"
    return True, figures, ""


def inference_group(ctx: Context) -> list[CheckResult]:
    from masnn.models.inference import prepare_for_inference

    plan, device = ctx.plan, ctx.device
    model = active_model(plan, device)
    samples = synthetic_samples(ctx.workdir / "recordings", plan)
    held = window_batch(samples, framing(plan), plan.agreement_samples)
    one, many = held[:, :1].to(device), event_frames(plan.inference_batch, plan.T, plan.input_size).transpose(0, 1).to(device)
    with torch.inference_mode():
        latency = timed(lambda: model(one), device, plan.repeats)
        throughput = plan.inference_batch / timed(lambda: model(many), device, max(2, plan.repeats // 3))
        with strict_fp32():
            ours = model(held.to(device)).float().cpu()
        default = model(held.to(device)).float().cpu()
    copy_on_cpu = prepare_for_inference(copy.deepcopy(model).cpu())
    with torch.inference_mode():
        ref = copy_on_cpu(held)
    passed, figures, why = compare_predictions(ours, ref)
    figures["same_prediction_default_tf32"] = float((default.argmax(-1) == ref.argmax(-1)).float().mean())
    window = f"T={plan.T} x {DT_US // 1000} ms"
    return [
        CheckResult("inference latency", "inference", None, f"one {window} window, batch 1: {latency * 1e3:.1f} ms",
                    {"seconds": latency, "T": plan.T}),
        CheckResult("inference throughput", "inference", None,
                    f"batch {plan.inference_batch}: {throughput:.0f} windows/s", {"samples_per_s": throughput}),
        CheckResult("inference vs CPU copy", "inference", passed, why or
                    f"same prediction on {figures['samples'] - figures['differing']} of {figures['samples']} windows "
                    f"(max rate difference {figures['max_rate_difference']:.3g}; with TF32 on "
                    f"{100 * figures['same_prediction_default_tf32']:.0f}%)", figures, detail=why),
        check_classifier(ctx, samples),
    ]


def check_classifier(ctx: Context, samples: list) -> CheckResult:
    """The shipped default model through ``Classifier`` on the device and on the CPU (its inference copy)."""
    from masnn.classify import Classifier
    from masnn.shipped import DEFAULT_WEIGHTS, shipped_weights

    name = "classify, shipped model"
    if DEFAULT_WEIGHTS not in shipped_weights():
        return skipped(name, "inference", f"the shipped model {DEFAULT_WEIGHTS} is not installed")
    on_device, on_cpu = Classifier.load(None, str(ctx.device)), Classifier.load(None, "cpu")
    n = min(len(samples), ctx.plan.agreement_samples)
    windows = window_batch(samples[:n], on_cpu.framing, n).numpy()
    answers = [(on_device(windows[:, i]), on_cpu(windows[:, i])) for i in range(n)]
    ours = torch.tensor([a["probabilities"] for a, _ in answers])
    ref = torch.tensor([b["probabilities"] for _, b in answers])
    passed, figures, why = compare_predictions(ours, ref, active=ref.amax(-1) > ref.amin(-1))  # silent: uniform
    figures["latency_ms_device"] = float(np.median([a["stats"]["latency_ms"] for a, _ in answers]))
    return CheckResult(name, "inference", passed, why or
                       f"{DEFAULT_WEIGHTS} on {ctx.device}: same class as the CPU on {n - figures['differing']} of {n} "
                       f"windows, median latency {figures['latency_ms_device']:.1f} ms", figures, detail=why)
