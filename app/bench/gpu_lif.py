"""`masnn bench gpu`, the Triton groups: LIF parity, the kernels' memory bandwidth, SpikingJelly's CUDA LIF.

Parity. Currents x ~ 0.25 + 0.5 N(0, 1) (many neurons near the threshold), an initial state h ~ 0.3 N(0, 1) and a
random projection w ~ N(0, 1) of the spikes as the gradient coming back, so gradients are O(1) and an absolute
tolerance means something. Parameters decay 0.6, threshold 0.5, v_reset -0.2. The reference is
``lif_multistep`` (the plain loop with autograd) in float32 on the same device, on the same inputs: for a bf16 or
fp16 input, on its values in float32, since the kernel loads them into float32 and computes there.

Tolerances (``TOLERANCES``): spikes identical in every dtype (the kernel rounds as PyTorch does: no FMA in the
forward). Gradients: |ours - reference| <= atol + rtol |reference| element by element, with rtol = atol = 1e-5 in
float32; in bf16 and fp16 the kernel keeps U in float32 and rounds only its result, so rtol adds one unit in the
last place of that result: 2^-7 (bf16) or 2^-10 (fp16) of the value.

Bandwidth: bytes the kernels must move (forward for training: read X, write S and U; forward for inference: read
X, write S; backward: read U and dL/dS, write dL/dX; U in float32) over their best time, against a device-to-device
torch copy of ``plan.copy_bytes`` (read + write) timed in the same run.
"""
from __future__ import annotations

import importlib.util
import inspect
import json
import math
import sys
import tempfile
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable

import torch

from masnn.bench.gpu import PLANS, CheckResult, Context, plan_threads, run_group, skipped, timed
from masnn.models.lif import RESETS, SURROGATES, LIFParams, lif_multistep, select_backend
from masnn.models.lif.triton_kernel import HAS_TRITON, interpreting

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


@dataclass(frozen=True)
class Tolerance:
    rtol: float
    atol: float


# half: one unit in the last place of the result (the GPU rounds to nearest, within half of it; Triton's interpreter
# truncates to bf16, a whole unit)
TOLERANCES = {"float32": Tolerance(1e-5, 1e-5), "bfloat16": Tolerance(2**-7 + 1e-5, 1e-5),
              "float16": Tolerance(2**-10 + 1e-5, 1e-5)}
BASE = LIFParams(decay=0.6, threshold=0.5, v_reset=-0.2)
Kernel = Callable[[torch.Tensor, LIFParams, torch.Tensor], torch.Tensor]  # (x [T, N], params, h [N]) -> spikes


def lif_cases(plan) -> list[tuple[str, LIFParams, tuple[int, ...]]]:
    """(dtype, params, sizes): float32 for every reset x surrogate (and detach_reset per reset); bf16 and fp16 for
    every reset and every surrogate, paired (hard/rectangular, soft/sigmoid, threshold/atan)."""
    cases = [("float32", replace(BASE, reset=r, surrogate=s), plan.lif_sizes) for r in RESETS for s in SURROGATES]
    if plan.detach:
        cases += [("float32", replace(BASE, reset=r, detach_reset=True), plan.lif_sizes) for r in RESETS]
    cases += [(d, replace(BASE, reset=r, surrogate=s), plan.half_sizes)
              for d in ("bfloat16", "float16") for r, s in zip(RESETS, SURROGATES)]
    return cases


def case_name(dtype: str, p: LIFParams) -> str:
    return f"lif {dtype} {p.reset}/{p.surrogate}" + (" detach" if p.detach_reset else "")


def shape_of(size: int) -> tuple[int, int]:
    """(T, N) of ``size`` neuron-steps: T = 60 from 150k neuron-steps on, fewer below (so small sizes still span
    several programs of 1024 neurons)."""
    steps = min(60, max(4, size // 2500))
    return steps, math.ceil(size / steps)


def make_inputs(size: int, dtype: torch.dtype, device: torch.device, seed: int = 0):
    """x [T, N], h [N] and w [T, N] in ``dtype``, drawn in float32 on the device."""
    steps, n = shape_of(size)
    g = torch.Generator(device=device).manual_seed(seed)
    x = torch.randn(steps, n, generator=g, device=device).mul_(0.5).add_(0.25)
    h = torch.randn(n, generator=g, device=device).mul_(0.3)
    w = torch.randn(steps, n, generator=g, device=device)
    return x.to(dtype), h.to(dtype), w.to(dtype)


@dataclass
class LIFRun:
    spikes: torch.Tensor
    grad_x: torch.Tensor | None
    grad_h: torch.Tensor | None


def run_lif(fn: Kernel, p: LIFParams, x: torch.Tensor, h: torch.Tensor, w: torch.Tensor) -> LIFRun:
    """Spikes and dL/dx, dL/dh for dL/dS = w (no sum: a half-precision sum of 1e8 terms would overflow)."""
    x, h = x.detach().clone().requires_grad_(), h.detach().clone().requires_grad_()
    spikes = fn(x, p, h)
    torch.autograd.backward(spikes, w.to(spikes.dtype))
    return LIFRun(spikes.detach(), x.grad, h.grad)


def reference_run(p: LIFParams, x: torch.Tensor, h: torch.Tensor, w: torch.Tensor) -> LIFRun:
    """The reference loop in float32 on the same values (a half input's values are exact in float32)."""
    return run_lif(lif_multistep, p, x.float(), h.float(), w.float())


def compare_lif(ours: LIFRun, ref: LIFRun, tol: Tolerance) -> tuple[bool, dict, str]:
    """(passed, figures, the first problem): spikes identical, gradients within tolerance, and a comparison that
    means something (some neurons fire, some do not, gradients not all zero)."""
    spikes_differ = int((ours.spikes.float() != ref.spikes).sum())
    rate = float(ref.spikes.mean())
    figures = {"spikes_differ": spikes_differ, "spike_rate": rate, "max_abs_grad_error": 0.0, "worst_in_tolerance": 0.0,
               "grads_beyond_tolerance": 0}
    problems = []
    if spikes_differ:
        problems.append(f"{spikes_differ} of {ref.spikes.numel()} spikes differ")
    for name, o, r in (("x", ours.grad_x, ref.grad_x), ("h", ours.grad_h, ref.grad_h)):
        if o is None or o.shape != r.shape:
            problems.append(f"no gradient for {name}" if o is None else f"dL/d{name} has shape {tuple(o.shape)}")
            continue
        error = (o.float() - r).abs()
        bound = tol.atol + tol.rtol * r.abs()
        beyond = int((error > bound).sum()) + int(error.isnan().sum())
        figures["max_abs_grad_error"] = max(figures["max_abs_grad_error"], float(error.max()))
        figures["worst_in_tolerance"] = max(figures["worst_in_tolerance"], float((error / bound).max()))
        figures["grads_beyond_tolerance"] += beyond
        if beyond:
            problems.append(f"{beyond} gradients dL/d{name} beyond tolerance (worst {float((error / bound).max()):.3g}x)")
    if not 0.0 < rate < 1.0 or float(ref.grad_x.abs().sum()) == 0.0:
        problems.append(f"a comparison that means nothing (spike rate {rate:.3f}, zero gradients?)")
    return not problems, figures, problems[0] if problems else ""


def check_lif_case(fn: Kernel, dtype: str, p: LIFParams, sizes: tuple[int, ...], device: torch.device,
                   deadline: float = math.inf) -> CheckResult:
    """``fn`` against the reference at every size (ascending; sizes past the deadline are listed as skipped)."""
    name, tol = case_name(dtype, p), TOLERANCES[dtype]
    rows, problem, left = [], "", []
    for size in sizes:
        if time.monotonic() > deadline:
            left.append(size)
            continue
        x, h, w = make_inputs(size, DTYPES[dtype], device, seed=size % 9973)
        ok, figures, why = compare_lif(run_lif(fn, p, x, h, w), reference_run(p, x, h, w), tol)
        rows.append({"size": size, "T": x.shape[0], "N": x.shape[1], "passed": ok, **figures})
        problem = problem or (f"size {size:.3g}: {why}" if why else "")
        del x, h, w
    figures = {"tolerance": {"rtol": tol.rtol, "atol": tol.atol}, "sizes": rows, "sizes_skipped_for_budget": left}
    if not rows:
        return skipped(name, "lif", "the --budget was spent")
    passed = not problem
    worst = max(r["worst_in_tolerance"] for r in rows)
    first, last = f"{rows[0]['size']:.3g}", f"{rows[-1]['size']:.3g}"
    span = (first if first == last else f"{first}..{last}") + " neuron-steps"
    span += f" ({len(left)} sizes cut by the budget)" if left else ""
    summary = f"{span}: spikes identical, worst gradient error {worst:.2g} x the tolerance" if passed else problem
    return CheckResult(name, "lif", passed, summary, figures, detail=problem)


class _CudaProbe:
    """Stands in for a CUDA tensor in ``select_backend`` (which looks only at ``is_cuda``)."""

    is_cuda = True


def check_auto_backend(device: torch.device, select=select_backend, has_triton: bool = HAS_TRITON) -> CheckResult:
    """"auto" picks Triton for CUDA tensors (and the fused path for CPU ones)."""
    here = select(torch.empty(1, device=device), "auto")
    expected = "triton" if device.type == "cuda" else "fused"
    on_cuda = select(_CudaProbe(), "auto")
    problems = []
    if not has_triton:
        problems.append("triton is not installed, so CUDA tensors run the plain PyTorch ops (pip install 'masnn[gpu]')")
    if here != expected:
        problems.append(f'"auto" picked {here!r} on {device.type}, not {expected!r}')
    if has_triton and on_cuda != "triton":
        problems.append(f'"auto" picks {on_cuda!r} for CUDA tensors, not "triton"')
    summary = f'"auto" picks {here!r} here and {on_cuda!r} for CUDA tensors'
    return CheckResult("auto backend", "lif", not problems, problems[0] if problems else summary,
                       {"here": here, "cuda": on_cuda}, detail=problems[0] if problems else "")


def _triton_unavailable(ctx: Context, group: str) -> list[CheckResult] | None:
    if not HAS_TRITON:
        reason = "triton is not installed (pip install 'masnn[gpu]')"
        return [CheckResult(group, group, False, reason, detail=reason)] if ctx.device.type == "cuda" else [skipped(group, group, reason)]
    if ctx.device.type != "cuda" and not interpreting():
        return [skipped(group, group, "Triton kernels need CUDA, or TRITON_INTERPRET=1 set before triton is imported")]
    return None


def lif_group(ctx: Context, fn: Kernel | None = None) -> list[CheckResult]:
    unavailable = _triton_unavailable(ctx, "lif")
    if unavailable:
        return [check_auto_backend(ctx.device)] + unavailable
    from masnn.models.lif.triton_kernel import lif_triton

    fn = fn or lif_triton
    results = [check_auto_backend(ctx.device)]
    for dtype, p, sizes in lif_cases(ctx.plan):
        results.append(check_lif_case(fn, dtype, p, sizes, ctx.device, ctx.deadline))
        if ctx.device.type == "cuda":
            torch.cuda.empty_cache()
    return results


# ---------------------------------------------------------------------------------------------------------------
# bandwidth

def lif_bytes(steps: int, n: int, dtype: torch.dtype, phase: str) -> int:
    """Bytes a kernel must move: X, S, dL/dS, dL/dX in ``dtype``; U in float32 (the compute dtype)."""
    e, u = torch.finfo(dtype).bits // 8, 4
    per_step = {"forward": e + e + u, "inference": e + e, "backward": u + e + e}[phase]
    return steps * n * per_step


def copy_bandwidth(nbytes: int, device: torch.device, repeats: int) -> float:
    """Bytes/s of a device-to-device copy, counting bytes read and written."""
    src = torch.ones(nbytes // 4, device=device)
    dst = torch.empty_like(src)
    seconds = timed(lambda: dst.copy_(src), device, repeats)
    return 2 * src.numel() * 4 / seconds


def kernel_bandwidth(fn, dtype: torch.dtype, size: int, device: torch.device, repeats: int) -> dict:
    """Best time and bytes/s of the forward (training and inference) and the backward at ``size`` neuron-steps."""
    p = replace(BASE, surrogate="sigmoid")
    x, _, w = make_inputs(size, dtype, device)
    steps, n = x.shape
    xg = x.clone().requires_grad_()
    with torch.no_grad():
        inference = timed(lambda: fn(x, p), device, repeats)
    forward = timed(lambda: fn(xg, p), device, repeats)
    spikes = fn(xg, p)
    backward = timed(lambda: torch.autograd.grad(spikes, xg, w, retain_graph=True), device, repeats)
    return {phase: {"seconds": s, "bytes": lif_bytes(steps, n, dtype, phase), "bytes_per_s": lif_bytes(steps, n, dtype, phase) / s}
            for phase, s in (("forward", forward), ("inference", inference), ("backward", backward))}


def bandwidth_results(copy_bps: float, kernels: dict[str, dict], copy_bytes: int) -> list[CheckResult]:
    """Measurements: the copy's bandwidth, and each dtype's phases as a fraction of it."""
    results = [CheckResult("copy bandwidth", "bandwidth", None, f"torch copy of {copy_bytes / 2**30:.2g} GiB: "
                           f"{copy_bps / 1e9:.0f} GB/s (read + write)", {"bytes_per_s": copy_bps, "bytes": copy_bytes})]
    for dtype, phases in kernels.items():
        for row in phases.values():
            row["fraction_of_copy"] = row["bytes_per_s"] / copy_bps
        line = ", ".join(f"{phase} {row['bytes_per_s'] / 1e9:.0f} GB/s ({row['fraction_of_copy']:.2f})"
                         for phase, row in phases.items())
        results.append(CheckResult(f"lif bandwidth {dtype}", "bandwidth", None, line + " of the copy", phases))
    return results


def bandwidth_group(ctx: Context) -> list[CheckResult]:
    unavailable = _triton_unavailable(ctx, "bandwidth")
    if unavailable:
        return unavailable
    from masnn.models.lif.triton_kernel import lif_triton

    plan, device = ctx.plan, ctx.device
    copy_bps = copy_bandwidth(plan.copy_bytes, device, plan.repeats)
    kernels = {d: kernel_bandwidth(lif_triton, DTYPES[d], plan.bandwidth_size, device, plan.repeats)
               for d in ("float32", "bfloat16")}
    return bandwidth_results(copy_bps, kernels, plan.copy_bytes)


# ---------------------------------------------------------------------------------------------------------------
# SpikingJelly

def spikingjelly_cuda(p: LIFParams, device: torch.device) -> tuple[Callable | None, str]:
    """(x -> spikes with SpikingJelly's CUDA LIF equal to ``p``, its backend), or (None, why not)."""
    if device.type != "cuda":
        return None, "SpikingJelly's CUDA LIF needs a CUDA device"
    if importlib.util.find_spec("spikingjelly") is None:
        return None, "spikingjelly is not installed (no dependency of masnn; pip install spikingjelly cupy-cuda12x)"
    from spikingjelly.activation_based import neuron, surrogate

    kwargs = dict(tau=1.0 / (1.0 - p.decay), decay_input=False, v_threshold=p.threshold, v_reset=p.v_reset,
                  surrogate_function=surrogate.Sigmoid(alpha=p.slope), detach_reset=p.detach_reset, step_mode="m")
    if "backend" not in inspect.signature(neuron.LIFNode).parameters:
        return None, "this SpikingJelly has no selectable backends"
    node = neuron.LIFNode(**kwargs, backend="torch")
    usable = [b for b in ("cupy", "triton") if b in node.supported_backends and importlib.util.find_spec(b)]
    if not usable:
        return None, f"SpikingJelly offers {node.supported_backends}, no CUDA backend whose package is installed (cupy)"
    node.backend = usable[0]

    def run(x: torch.Tensor) -> torch.Tensor:
        node.reset()
        return node(x)

    return run, usable[0]


def check_spikingjelly(ctx: Context, factory=spikingjelly_cuda, ours: Kernel | None = None) -> CheckResult:
    """Forward + backward time of ours against SpikingJelly's at ``plan.bandwidth_size`` (a measurement)."""
    from masnn.bench.model import benchmark_params  # hard reset to 0, sigmoid: the neuron both projects implement

    p = benchmark_params("sigmoid")
    theirs, backend = factory(p, ctx.device)
    if theirs is None:
        return skipped("spikingjelly", "spikingjelly", backend)
    if ours is None:
        from masnn.models.lif.triton_kernel import lif_triton as ours
    x = make_inputs(ctx.plan.bandwidth_size, torch.float32, ctx.device)[0].clamp_(0.0, 0.6).requires_grad_()

    def step(fn):
        x.grad = None
        spikes = fn(x)
        spikes.sum().backward()
        return spikes.detach()

    ours_s = timed(lambda: step(lambda v: ours(v, p)), ctx.device, ctx.plan.repeats)
    theirs_s = timed(lambda: step(theirs), ctx.device, ctx.plan.repeats)
    agree = float((step(lambda v: ours(v, p)) == step(theirs)).float().mean())
    figures = {"backend": backend, "ours_s": ours_s, "theirs_s": theirs_s, "speedup": theirs_s / ours_s,
               "spike_agreement": agree, "neuron_steps": ctx.plan.bandwidth_size}
    return CheckResult("spikingjelly", "spikingjelly", None,
                       f"{theirs_s / ours_s:.2f}x SpikingJelly's {backend} LIF (fwd+bwd), same spikes {100 * agree:.3f}%", figures)


def spikingjelly_group(ctx: Context) -> list[CheckResult]:
    unavailable = _triton_unavailable(ctx, "spikingjelly")
    return unavailable or [check_spikingjelly(ctx)]


# ---------------------------------------------------------------------------------------------------------------
# the interpreter's child process (see gpu._triton_groups_in_interpreter)

def _child(args: dict) -> list[dict]:
    if not interpreting():
        raise SystemExit("set TRITON_INTERPRET=1 before running this module")
    with tempfile.TemporaryDirectory(prefix="masnn-bench-gpu-") as scratch, plan_threads(PLANS[args["plan"]]):
        ctx = Context(PLANS[args["plan"]], torch.device("cpu"), Path(scratch), time.monotonic() + args["budget_s"])
        functions = {"lif": lif_group, "bandwidth": bandwidth_group, "spikingjelly": spikingjelly_group}
        for group in args["groups"]:
            ctx.results += run_group(group, ctx, functions)
        return [r.to_dict() for r in ctx.results]


if __name__ == "__main__":
    print(json.dumps(_child(json.loads(sys.argv[1]))))
