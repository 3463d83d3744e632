"""`masnn bench gpu`: one prepared run that proves or disproves masnn's GPU path in a few minutes.

Checks, by group (each a small function returning ``CheckResult`` records; ``run_checks`` runs them in order):

- lif (``gpu_lif``): the Triton LIF forward and backward against the reference loop, every reset and surrogate
  (and detach_reset), sizes 1e3 .. 1e8 neuron-steps: spikes identical and gradients within 1e-5 in fp32; bf16
  and fp16 within the rounding of the result to half (see ``gpu_lif.TOLERANCES``); "auto" picks Triton on CUDA.
- bandwidth (``gpu_lif``): the LIF kernels' achieved memory bandwidth as a fraction of a large torch copy's.
- spikingjelly (``gpu_lif``): the speed-up over SpikingJelly's CUDA LIF where it is installed.
- training (``gpu_model``): the 3-layer TCSA net, T = 60, batch 32, through ``masnn.training.loop.train`` in fp32
  and under bf16 autocast: losses close, samples/s, peak GPU memory.
- loader (``gpu_model``): FrameDataset with the frame cache on synthetic recordings, samples/s against the model's.
- inference (``gpu_model``): latency of one 0.9 s window (batch 1), throughput at batch 128, the same predictions as
  the CPU inference copy; the shipped model through ``Classifier`` on the device against the CPU.
- distributed (``gpu_dist``): with two or more GPUs, a torchrun/NCCL run against a one-process run.

A record's ``passed`` is True or False for a correctness check, None for a measurement (or a skip, which says
why). A check that raises is a failed check: the GPU path broke there. The exit code is 1 when any check failed.

Plans: "full" (at most about 4 minutes on one H200), "quick", and "cpu": the same logic at tiny sizes on the CPU,
where the Triton groups run under Triton's interpreter in a child process (TRITON_INTERPRET=1 must be set before
triton is first imported) or are skipped with the reason. That is how the tests exercise every comparison.
"""
from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import subprocess
import sys
import tempfile
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch

GROUPS = ("lif", "bandwidth", "spikingjelly", "training", "loader", "inference", "distributed")
TRITON_GROUPS = ("lif", "bandwidth", "spikingjelly")  # under the interpreter when the plan is "cpu"
NO_CUDA = ("no CUDA device: `masnn bench gpu` checks the GPU path and has nothing to check here "
           "(--device cpu runs its own logic at tiny sizes)")


@dataclass
class CheckResult:
    """One check's outcome. ``passed``: True / False for a correctness check, None for a measurement or a skip."""

    name: str
    group: str
    passed: bool | None = None
    summary: str = ""  # one line for the table
    figures: dict = field(default_factory=dict)
    skipped: str | None = None  # why it did not run
    detail: str = ""  # why it failed (one line)

    @property
    def status(self) -> str:
        if self.skipped is not None:
            return "skip"
        return "info" if self.passed is None else ("pass" if self.passed else "FAIL")

    def to_dict(self) -> dict:
        return {**dataclasses.asdict(self), "status": self.status}

    @classmethod
    def from_dict(cls, d: dict) -> "CheckResult":
        return cls(**{k: v for k, v in d.items() if k != "status"})


def skipped(name: str, group: str, reason: str) -> CheckResult:
    return CheckResult(name, group, skipped=reason, summary=f"skipped: {reason}")


@dataclass(frozen=True)
class Plan:
    """Sizes of one run. LIF sizes are neuron-steps (T x N); the model runs at T x input_size x input_size."""

    name: str
    lif_sizes: tuple[int, ...]  # fp32, every reset x surrogate
    half_sizes: tuple[int, ...]  # bf16 and fp16, every reset and every surrogate (not every pair)
    detach: bool  # detach_reset too (fp32)
    bandwidth_size: int  # neuron-steps timed for the bandwidth and the SpikingJelly comparison
    copy_bytes: int
    T: int
    input_size: int
    batch: int
    train_steps: int  # optimizer steps per epoch
    epochs: int  # the first includes the warm-up; samples/s come from the last
    recordings: int  # synthetic recordings for the loader (and the inference inputs)
    recording_s: float
    events_per_s: int
    loader_workers: tuple[int, ...]
    inference_batch: int
    agreement_samples: int
    repeats: int
    cpu_distributed: bool = False  # the distributed check on the CPU too (gloo), for the tests
    threads: int | None = None  # torch's CPU threads during the run (tiny ops on a busy machine: 1 is fastest)


PLANS = {
    "full": Plan("full", lif_sizes=(10**3, 10**4, 10**5, 10**6, 10**7, 10**8), half_sizes=(10**3, 10**5, 10**7),
                 detach=True, bandwidth_size=240_000_000, copy_bytes=2 * 2**30, T=60, input_size=32, batch=32,
                 train_steps=3, epochs=2, recordings=64, recording_s=1.5, events_per_s=150_000, loader_workers=(0, 4),
                 inference_batch=128, agreement_samples=32, repeats=10),
    "quick": Plan("quick", lif_sizes=(10**3, 10**5, 10**7), half_sizes=(10**5,), detach=False,
                  bandwidth_size=60_000_000, copy_bytes=2**30, T=60, input_size=32, batch=32, train_steps=2, epochs=2,
                  recordings=32, recording_s=1.2, events_per_s=100_000, loader_workers=(0,), inference_batch=128,
                  agreement_samples=16, repeats=5),
    "cpu": Plan("cpu", lif_sizes=(10**3, 10**4), half_sizes=(10**3,), detach=True, bandwidth_size=20_000,
                copy_bytes=2**22, T=4, input_size=8, batch=4, train_steps=2, epochs=2, recordings=6, recording_s=0.3,
                events_per_s=50_000, loader_workers=(0,), inference_batch=8, agreement_samples=6, repeats=2,
                cpu_distributed=True, threads=1),
}


# ---------------------------------------------------------------------------------------------------------------
# devices and timing

def resolve_device(name: str) -> torch.device | None:
    """auto / cuda / cuda:N: the GPU, None without CUDA; cpu: the CPU (the check's own logic at tiny sizes)."""
    if name == "cpu":
        return torch.device("cpu")
    if name not in ("auto", "cuda") and not name.startswith("cuda:"):
        raise ValueError(f"--device: must be auto, cpu, cuda or cuda:N (got {name!r})")
    if not torch.cuda.is_available():
        return None
    device = torch.device("cuda" if name == "auto" else name)
    if (device.index or 0) >= torch.cuda.device_count():
        raise ValueError(f"--device: {name}: this machine has {torch.cuda.device_count()} CUDA device(s)")
    return torch.device("cuda", device.index or 0)


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn: Callable[[], object], device: torch.device, repeats: int = 3, warmup: int = 1) -> float:
    """Best wall time of ``fn`` in seconds, the device's queue drained before and after each run."""
    for _ in range(warmup):
        fn()
    best = float("inf")
    for _ in range(repeats):
        synchronize(device)
        start = time.perf_counter()
        fn()
        synchronize(device)
        best = min(best, time.perf_counter() - start)
    return best


def peak_memory_mb(device: torch.device) -> float | None:
    return torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else None


def reset_peak_memory(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)


def environment(device: torch.device) -> dict:
    from masnn.models.lif.triton_kernel import HAS_TRITON, interpreting

    env = {"device": str(device), "torch": torch.__version__, "triton": None, "interpreter": interpreting(),
           "cuda_devices": torch.cuda.device_count() if torch.cuda.is_available() else 0}
    if HAS_TRITON:
        import triton

        env["triton"] = triton.__version__
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        env.update(name=props.name, capability=f"{props.major}.{props.minor}", memory_gb=props.total_memory / 1e9,
                   cuda=torch.version.cuda, cudnn_tf32=torch.backends.cudnn.allow_tf32,
                   matmul_tf32=torch.backends.cuda.matmul.allow_tf32)
    return env


@contextlib.contextmanager
def plan_threads(plan: Plan):
    """torch's CPU threads as the plan asks, restored after."""
    saved = torch.get_num_threads()
    if plan.threads:
        torch.set_num_threads(plan.threads)
    try:
        yield
    finally:
        torch.set_num_threads(saved)


# ---------------------------------------------------------------------------------------------------------------
# the runner

@dataclass
class Context:
    """What the groups of one run share: the plan, the device, a scratch folder, the deadline, earlier results."""

    plan: Plan
    device: torch.device
    workdir: Path
    deadline: float  # time.monotonic()
    results: list[CheckResult] = field(default_factory=list)

    def out_of_time(self) -> bool:
        return time.monotonic() > self.deadline

    def figure(self, name: str, key: str):
        """A figure of an earlier result (None when that check did not run)."""
        return next((r.figures.get(key) for r in self.results if r.name == name), None)


def _group_functions() -> dict[str, Callable[[Context], list[CheckResult]]]:
    from masnn.bench import gpu_dist, gpu_lif, gpu_model

    return {"lif": gpu_lif.lif_group, "bandwidth": gpu_lif.bandwidth_group, "spikingjelly": gpu_lif.spikingjelly_group,
            "training": gpu_model.training_group, "loader": gpu_model.loader_group,
            "inference": gpu_model.inference_group, "distributed": gpu_dist.distributed_group}


def run_group(group: str, ctx: Context, functions=None) -> list[CheckResult]:
    """One group's results; past the deadline a skip, and an exception a failed check (the path broke there)."""
    if ctx.out_of_time():
        return [skipped(group, group, "the --budget was spent before this group started")]
    try:
        return (functions or _group_functions())[group](ctx)
    except Exception as e:  # noqa: BLE001 - any error on the GPU path is the finding
        message = " ".join(f"{type(e).__name__}: {e}".split())[:300]
        return [CheckResult(group, group, passed=False, summary=f"crashed: {message}", detail=message,
                            figures={"traceback": traceback.format_exc()[-6000:]})]


def _triton_groups_in_interpreter(groups: list[str], ctx: Context) -> list[CheckResult]:
    """The Triton groups on the CPU, in a child process with TRITON_INTERPRET=1 (read when triton is imported)."""
    from masnn.models.lif.triton_kernel import HAS_TRITON

    if not HAS_TRITON:
        return [skipped(g, g, "triton is not installed (pip install 'masnn[gpu]')") for g in groups]
    args = json.dumps({"plan": ctx.plan.name, "groups": groups, "budget_s": max(ctx.deadline - time.monotonic(), 1.0)})
    env = {**os.environ, "TRITON_INTERPRET": "1", **({"OMP_NUM_THREADS": str(ctx.plan.threads)} if ctx.plan.threads else {})}
    done = subprocess.run([sys.executable, "-m", "masnn.bench.gpu_lif", args], env=env, capture_output=True, text=True)
    lines = done.stdout.strip().splitlines()
    if done.returncode != 0 or not lines:
        tail = " ".join((done.stderr or done.stdout).strip().splitlines()[-3:])[:300]
        return [CheckResult("triton interpreter", "lif", passed=False, summary="the interpreter's child failed",
                            detail=f"exit code {done.returncode}: {tail}", figures={"stderr": done.stderr[-6000:]})]
    return [CheckResult.from_dict(d) for d in json.loads(lines[-1])]


def run_checks(plan: Plan, device: torch.device, groups: tuple[str, ...] = GROUPS, budget_s: float = 240.0,
               after_group: Callable[[list[CheckResult]], None] | None = None, functions=None) -> list[CheckResult]:
    """Every group of ``groups`` in order; ``after_group`` sees the results so far after each (for --out, so a run
    stopped by a time limit leaves what it had). On the CPU, without the interpreter, the Triton groups run in a
    child process under it."""
    from masnn.models.lif.triton_kernel import interpreting

    deadline = time.monotonic() + budget_s
    with tempfile.TemporaryDirectory(prefix="masnn-bench-gpu-") as scratch, plan_threads(plan):
        ctx = Context(plan, device, Path(scratch), deadline)
        ctx.results.append(CheckResult("environment", "environment", summary=_environment_line(device),
                                       figures=environment(device)))
        pending = [g for g in GROUPS if g in groups]
        in_child = device.type == "cpu" and not interpreting() and functions is None
        child = [g for g in pending if g in TRITON_GROUPS] if in_child else []
        if child:
            ctx.results += _triton_groups_in_interpreter(child, ctx)
            if after_group:
                after_group(ctx.results)
        for group in pending:
            if group in child:
                continue
            ctx.results += run_group(group, ctx, functions)
            if after_group:
                after_group(ctx.results)
        return ctx.results


def _environment_line(device: torch.device) -> str:
    env = environment(device)
    where = env.get("name", "CPU") + (" (Triton interpreter)" if env["interpreter"] else "")
    return f"{where}, torch {env['torch']}, triton {env['triton'] or 'not installed'}"


# ---------------------------------------------------------------------------------------------------------------
# the report as data

def failures(results: list[CheckResult]) -> list[CheckResult]:
    return [r for r in results if r.passed is False]


def report_dict(results: list[CheckResult], plan: Plan, elapsed_s: float, complete: bool = True) -> dict:
    return {"plan": dataclasses.asdict(plan), "elapsed_s": elapsed_s, "complete": complete,
            "passed": not failures(results), "failed": [r.name for r in failures(results)],
            "checks": [r.to_dict() for r in results]}


def write_report(path: Path, report: dict) -> None:
    """Written whole or not at all (a run killed while writing leaves the previous report)."""
    from masnn.datasets.io.writers import atomic_path

    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as temporary:
        temporary.write_text(json.dumps(report, indent=1) + "\n")
