"""`masnn bench model`: one LIF layer on the CPU, forward + backward, reference loop vs fused path.

T = 60 steps of one million neurons (x: [60, 1_000_000] float32, requires_grad, loss = spikes.sum()):
- time: best of `repeats` runs in this process, after one warm-up run per backend;
- peak memory: a fresh child process per backend, VmHWM after one forward + backward minus VmHWM once the
  input is allocated (VmHWM, not ru_maxrss: Linux carries ru_maxrss over exec);
- SpikingJelly's CPU LIF (its torch implementation) when `spikingjelly` is importable; it is no dependency.
Targets: fused at least 3x faster than the reference, at most half its peak memory. Measured, never asserted.

The surrogate defaults to sigmoid (slope 4 = SpikingJelly's Sigmoid(alpha=4)), the one both projects
implement natively; with hard reset to 0, decay 0.3 and decay_input=False, SpikingJelly's LIFNode with
tau = 1 / (1 - decay) is the same neuron (its spikes agree up to the rounding of 1 - 1/tau).

Then 3-layer MA-SNN inference of one window (``run_inference_benchmark``: dense vs the inference copy), and
classify's own window with the shipped model (``run_window_benchmark``): the per-window latency with the spike and
energy accounting included; target: the accounting under 10 % of it.
"""
from __future__ import annotations

import dataclasses
import importlib.util
import inspect
import json
import os
import statistics
import subprocess
import sys
import time

import numpy as np
import torch

from masnn.models.lif import BACKENDS, LIFParams

TARGET_SPEEDUP = 3.0
TARGET_MEMORY = 0.5


def benchmark_params(surrogate: str = "sigmoid") -> LIFParams:
    return LIFParams(decay=0.3, threshold=0.3, v_reset=0.0, reset="hard", surrogate=surrogate, slope=4.0)


def has_spikingjelly() -> bool:
    return importlib.util.find_spec("spikingjelly") is not None


def spikingjelly_lif(p: LIFParams):
    """SpikingJelly's multi-step LIFNode equal to `p` (hard reset, decay_input=False), as x -> spikes."""
    from spikingjelly.activation_based import neuron, surrogate

    if p.reset != "hard" or p.decay <= 0:
        raise ValueError("SpikingJelly's LIF matches only the hard reset with decay > 0")
    surrogates = {"sigmoid": lambda: surrogate.Sigmoid(alpha=p.slope), "atan": lambda: surrogate.ATan(alpha=p.slope),
                  "rectangular": lambda: surrogate.PiecewiseLeakyReLU(w=p.width / 2, c=0.0)}
    kwargs = dict(tau=1.0 / (1.0 - p.decay), decay_input=False, v_threshold=p.threshold, v_reset=p.v_reset,
                  surrogate_function=surrogates[p.surrogate](), detach_reset=p.detach_reset, step_mode="m")
    if "backend" in inspect.signature(neuron.LIFNode).parameters:  # SpikingJelly < 2.0 names its backends
        kwargs["backend"] = "torch"
    node = neuron.LIFNode(**kwargs)

    def run(x: torch.Tensor) -> torch.Tensor:
        node.reset()  # its state lives in the module: clear it before every sequence
        return node(x)

    return run


def make_backend(name: str, p: LIFParams):
    if name == "spikingjelly":
        return spikingjelly_lif(p)
    fn = BACKENDS[name]
    return lambda x: fn(x, p)


def make_input(n_neurons: int, steps: int, seed: int = 0) -> torch.Tensor:
    """Currents uniform in [0, 0.4): about a third of the neurons fire at each step. Drawn in place, so no
    temporary of the input's size raises the memory baseline."""
    generator = torch.Generator().manual_seed(seed)
    return torch.empty(steps, n_neurons).uniform_(0.0, 0.4, generator=generator).requires_grad_()  # (T, N)


def forward_backward(fn, x: torch.Tensor) -> tuple[float, float, torch.Tensor]:
    x.grad = None
    start = time.perf_counter()
    spikes = fn(x)
    middle = time.perf_counter()
    spikes.sum().backward()
    return middle - start, time.perf_counter() - middle, spikes.detach()


_MEMORY_PROBE = """
import json, sys
import torch
from masnn.bench.common import peak_resident_mb
from masnn.bench.model import benchmark_params, forward_backward, make_backend, make_input

name, n, steps, surrogate = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
fn = make_backend(name, benchmark_params(surrogate))
x = make_input(n, steps)
baseline = peak_resident_mb()
forward_backward(fn, x)
print(json.dumps(dict(baseline_mb=baseline, peak_mb=peak_resident_mb())))
"""


def measure_peak_memory(name: str, n_neurons: int, steps: int, surrogate: str) -> dict:
    """Peak resident memory of one forward + backward, in a fresh process (MB above the baseline)."""
    args = [sys.executable, "-c", _MEMORY_PROBE, name, str(n_neurons), str(steps), surrogate]
    result = subprocess.run(args, capture_output=True, text=True, check=True)
    report = json.loads(result.stdout.strip().splitlines()[-1])
    report["extra_mb"] = report["peak_mb"] - report["baseline_mb"]
    return report


def run_lif_benchmark(n_neurons: int = 1_000_000, steps: int = 60, repeats: int = 3, surrogate: str = "sigmoid",
                      spikingjelly: bool | None = None) -> dict:
    """Time and peak memory of forward + backward per backend; `spikingjelly` None: when importable."""
    p = benchmark_params(surrogate)
    names = ["reference", "fused"]
    if spikingjelly or (spikingjelly is None and has_spikingjelly()):
        names.append("spikingjelly")
    x = make_input(n_neurons, steps)
    results = {}
    reference_spikes = None
    for name in names:
        fn = make_backend(name, p)
        _, _, spikes = forward_backward(fn, x)  # warm-up: first-touch page faults, lazy imports
        if reference_spikes is None:
            reference_spikes = spikes
        runs = [forward_backward(fn, x)[:2] for _ in range(repeats)]
        forward_s, backward_s = min(runs, key=sum)
        memory = measure_peak_memory(name, n_neurons, steps, surrogate)
        results[name] = dict(seconds=forward_s + backward_s, forward_s=forward_s, backward_s=backward_s,
                             peak_extra_mb=memory["extra_mb"], baseline_mb=memory["baseline_mb"],
                             spike_agreement=float((spikes == reference_spikes).float().mean()))
        del spikes
    reference = results["reference"]
    for row in results.values():
        row["speedup"] = reference["seconds"] / row["seconds"]
        row["memory_ratio"] = row["peak_extra_mb"] / reference["peak_extra_mb"]
    fused = results["fused"]
    return dict(n_neurons=n_neurons, steps=steps, repeats=repeats, surrogate=surrogate, threads=torch.get_num_threads(),
                backends=results, meets_speed_target=fused["speedup"] >= TARGET_SPEEDUP,
                meets_memory_target=fused["memory_ratio"] <= TARGET_MEMORY)


def lif_benchmark_rows(result: dict) -> list[dict[str, str]]:
    """One printable row per backend; the keys, in order, are the column titles."""
    rows = []
    for name, r in result["backends"].items():
        rows.append({
            "backend": name,
            "fwd+bwd ms": f"{r['seconds'] * 1e3:.0f}",
            "fwd / bwd ms": f"{r['forward_s'] * 1e3:.0f} / {r['backward_s'] * 1e3:.0f}",
            "speed vs reference": f"{r['speedup']:.1f}x",
            "peak MB": f"{r['peak_extra_mb']:.0f}",
            "memory vs reference": f"{r['memory_ratio']:.2f}",
            "same spikes": f"{100 * r['spike_agreement']:.3f}%",
        })
    return rows


TARGET_INFERENCE_MS = 45.0


def run_inference_benchmark(name: str = "ma-snn-3layer", attention: str = "TCS", steps: int = 60, repeats: int = 7,
                            seed: int = 0, agreement_samples: int = 32) -> dict:
    """One 0.9 s window (T = 60, batch 1): the dense model vs its inference copy (fused synapses, compiled
    activate-pre loop; fp32 and bf16 synapses), with the copies' agreement on ``agreement_samples`` inputs.

    Weights are random (BN statistics from a few batches) until trained models ship, and inputs are
    random event counts (5 % of pixels per frame): agreement here checks the arithmetic, not accuracy.
    """
    from masnn.models import create_model
    from masnn.models.inference import agreement, prepare_for_inference

    def frames(batch):
        return (torch.rand(steps, batch, 2, 32, 32) < 0.05).float() * torch.randint(1, 4, (steps, batch, 2, 32, 32)).float()

    with torch.random.fork_rng(devices=[]):  # weights and inputs from `seed`; the caller's RNG state is left as it was
        torch.manual_seed(seed)
        model = create_model(name, attention=attention, placement="paper", num_classes=11)
        with torch.no_grad():
            model.train()(frames(8))  # running statistics that are not the initial ones
        model.eval()
        x, held_out = frames(1), frames(agreement_samples)
    variants = {"dense fp32": model, "fused fp32": prepare_for_inference(model), "fused bf16": prepare_for_inference(model, bf16=True)}
    rows = {}
    with torch.inference_mode():
        for label, variant in variants.items():
            variant(x)
            variant(x)
            best = float("inf")
            for _ in range(repeats):
                start = time.perf_counter()
                variant(x)
                best = min(best, time.perf_counter() - start)
            rows[label] = dict(ms=best * 1e3, **(agreement(model, variant, held_out) if variant is not model else {}))
    return dict(model=name, attention=attention, steps=steps, threads=torch.get_num_threads(), variants=rows, target_ms=TARGET_INFERENCE_MS)


TARGET_ACCOUNTING_SHARE = 0.10


def _scanned(trace):
    """The trace without the counts taken where spikes are made: accounting then scans the recorded tensors,
    as it did before the counts (the comparison row of ``run_window_benchmark``)."""
    layers = [dataclasses.replace(tr, spike_count=None, input_nonzero=None, input_binary=None) for tr in trace.layers]
    return dataclasses.replace(trace, layers=layers)


def run_window_benchmark(weights: str | None = None, windows: int = 20, repeats: int = 10) -> dict:
    """What `masnn classify` does per window, on the first ``windows`` windows (classify's default stride of half a
    window) of the shipped sample recording with a shipped model (default: classify's), on the CPU:
    - forward: the inference copy alone (``record=False``);
    - with accounting: ``record=True`` then ``account``, as classify runs it (spikes counted where they are made);
    - with accounting by scanning: the same trace accounted by scanning its tensors, as before the counts.
    Best and median ms per window over ``repeats`` passes, the three interleaved window by window so that load
    changes touch them alike; the accounting share is (with accounting - forward) / with accounting, of the best
    times (as the other benchmarks here: a busy machine's medians say more about the load than the code). The load
    average is reported with them."""
    from masnn.classify import SAMPLE_RECORDING, Classifier, iter_windows
    from masnn.datasets.io.readers import open_recording
    from masnn.models.accounting import account
    from masnn.shipped import shipped_file

    classifier = Classifier.load(weights, device="cpu")
    with open_recording(shipped_file(SAMPLE_RECORDING)) as recording:
        frames = [w.frames for _, w in zip(range(windows), iter_windows(recording, classifier.framing, classifier.window_us // 2))]
    inputs = [torch.from_numpy(np.ascontiguousarray(f)).float()[:, None] for f in frames]  # (T, 1, 2, H, W)
    runner, preset = classifier.runner, classifier.energy_preset
    timed = {"forward": lambda x: runner(x), "with accounting": lambda x: account(runner(x, record=True)[1], preset),
             "with accounting by scanning": lambda x: account(_scanned(runner(x, record=True)[1]), preset)}
    seconds = {label: [] for label in timed}
    with torch.inference_mode():
        for fn in timed.values():  # warm-up: numba's first call, lazy imports
            fn(inputs[0])
        for _ in range(repeats):
            for x in inputs:
                for label, fn in timed.items():
                    start = time.perf_counter()
                    fn(x)
                    seconds[label].append(time.perf_counter() - start)
    median_ms = {label: 1e3 * statistics.median(s) for label, s in seconds.items()}
    best_ms = {label: 1e3 * min(s) for label, s in seconds.items()}
    share = {label: (best_ms[label] - best_ms["forward"]) / best_ms[label]
             for label in ("with accounting", "with accounting by scanning")}
    return dict(weights=classifier.weights, steps=classifier.framing.n_frames, windows=len(inputs), repeats=repeats,
                threads=torch.get_num_threads(), load_average=list(os.getloadavg()), best_ms=best_ms, median_ms=median_ms,
                accounting_share=share, target_share=TARGET_ACCOUNTING_SHARE)


def window_benchmark_line(result: dict) -> str:
    """One line: classify's window with and without its accounting, and the accounting done by scanning."""
    ms, share = result["best_ms"], result["accounting_share"]
    load = result["load_average"][0]
    name = result["weights"].rsplit("/", 1)[-1]
    return (f"classify's window ({name}, T={result['steps']}, {result['threads']} threads, load {load:.2f}; best of "
            f"{result['windows'] * result['repeats']}): forward {ms['forward']:.1f} ms; with spike and energy accounting "
            f"{ms['with accounting']:.1f} ms (accounting {100 * share['with accounting']:.1f} %, target under "
            f"{100 * result['target_share']:.0f} %); accounting by scanning the tensors instead "
            f"{ms['with accounting by scanning']:.1f} ms ({100 * share['with accounting by scanning']:.1f} %)")
