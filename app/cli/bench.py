"""`masnn bench`: the speed and memory targets."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer
from rich.table import Table

import masnn.cli.checks as checks
from masnn.cli.checks import MS_MIN, finite
from masnn.cli.choices import DEVICE_METAVAR, ModelBenchPart, Surrogate
from masnn.cli.console import console

bench_app = typer.Typer(no_args_is_help=True, help="Benchmarks (speed and memory targets).")


@bench_app.command("ingest")
def bench_ingest(
    events: int = typer.Option(4_000_000, min=1, help="Events in the framing benchmark."),
    big_mb: int = typer.Option(1024, min=1, help="Size of the recording framed for the memory benchmark (MB)."),
    workdir: Optional[Path] = typer.Option(None, help="Where to write the benchmark's files (default: a temp folder)."),
    as_json: bool = typer.Option(False, "--json", help="Print the results as JSON."),
):
    """Framing vs tonic, AEDAT 3.1 read rate, AEDAT4 -> frames vs dv-processing, peak memory."""
    from masnn.bench.ingest import run_ingest_benchmarks

    results = run_ingest_benchmarks(events, big_mb, workdir, console if not as_json else None)
    if as_json:
        print(json.dumps(results, indent=2))


@bench_app.command("model")
def bench_model(
    neurons: int = typer.Option(1_000_000, min=1, help="LIF neurons in the layer."),
    steps: int = typer.Option(60, min=1, help="Time steps T."),
    surrogate: Surrogate = typer.Option("sigmoid", help="Surrogate gradient (sigmoid is the one SpikingJelly shares)."),
    part: ModelBenchPart = typer.Option("all", help="Run one part: lif (forward + backward), inference (one 0.9 s "
                                        "window, T = 60) or window (classify's window, accounting included)."),
    as_json: bool = typer.Option(False, "--json", help="Print the results as JSON."),
):
    """LIF forward + backward on the CPU (reference loop vs fused path, vs SpikingJelly if installed), 3-layer
    MA-SNN inference of one 0.9 s window, then classify's window with the shipped model: the per-window latency
    with the spike and energy accounting included."""
    from masnn.bench.model import (
        lif_benchmark_rows,
        run_inference_benchmark,
        run_lif_benchmark,
        run_window_benchmark,
        window_benchmark_line,
    )

    result = run_lif_benchmark(neurons, steps, surrogate=surrogate) if part in ("all", "lif") else None
    inference = run_inference_benchmark() if part in ("all", "inference") else None
    window = run_window_benchmark() if part in ("all", "window") else None
    if as_json:
        print(json.dumps({k: v for k, v in dict(lif=result, inference=inference, window=window).items() if v is not None}, indent=2))
        return
    for label, row in (inference or {}).get("variants", {}).items():
        agreed = f", same prediction {100 * row['same_prediction']:.0f}% of {row['samples']}" if "samples" in row else ""
        console.print(f"3-layer TCSA inference, T=60, batch 1, {label}: {row['ms']:.0f} ms (target {inference['target_ms']:.0f}){agreed}")
    if window is not None:
        console.print(window_benchmark_line(window), soft_wrap=True)
    if result is None:
        return
    rows = lif_benchmark_rows(result)
    table = Table(title=f"LIF forward+backward, T={steps}, {neurons:,} neurons")
    for column in rows[0]:
        table.add_column(column)
    for row in rows:
        table.add_row(*row.values())
    console.print(table)


@bench_app.command("live")
def bench_live(
    rate: float = typer.Option(12e6, callback=checks.positive, help="Input events/s, > 0 (12 M is the DAVIS346's maximum)."),
    seconds: float = typer.Option(15.0, callback=checks.positive, help="Stream seconds to feed (> 0)."),
    weights: Optional[str] = typer.Option(None, help="Model (default: the shipped one, else an untrained one)."),
    stride: float = typer.Option(100.0, min=MS_MIN, callback=finite, help="Milliseconds between predictions."),
    device: str = typer.Option("cpu", callback=checks.device, metavar=DEVICE_METAVAR, help="auto, cpu, cuda or cuda:N."),
    as_json: bool = typer.Option(False, "--json", help="Print the results as JSON."),
):
    """The live pipeline fed from memory at a DAVIS346's top rate: sustained events/s, latency, drops, memory."""
    from masnn.bench.live import benchmark_table, run_live_benchmark

    result = run_live_benchmark(rate, seconds, weights, device, stride)
    if as_json:
        print(json.dumps(result, indent=2))
    else:
        console.print(benchmark_table(result))



@bench_app.command("fuzz")
def bench_fuzz(
    per_kind: int = typer.Option(3, min=1, help="Variants of each kind of damage (truncation, flips, zeros, lengths) per seed file."),
    commands: str = typer.Option("inspect,frames,select,classify", metavar="<COMMAND,...>", help="Comma-separated commands to run each variant through, of inspect, frames, select (frames from 0.3 s in) and classify."),
    real: Optional[Path] = typer.Option(None, help="A folder of real recordings to add as seeds (AEDAT 2.0, Prophesee, AEDAT 4.0)."),
    timeout: float = typer.Option(30.0, callback=checks.positive, help="Seconds a run may take before it counts as a hang."),
    seed: int = typer.Option(0, min=0, help="Seed of the damage."),
    as_json: bool = typer.Option(False, "--json", help="Every run's outcome as JSON."),
):
    """Damaged recordings of every format through the CLI, in a worker with a time limit and a memory cap: how many
    runs were read, refused in one line, salvaged with a warning, crashed, hung, blew up memory, printed a traceback
    or more than one line, or read a value that is wrong on purpose without a word. Exit code 1 if any run went wrong."""
    from masnn.bench.fuzz import OUTCOMES, run_fuzz

    chosen = tuple(c.strip() for c in commands.split(",") if c.strip())
    unknown = sorted(set(chosen) - {"inspect", "frames", "select", "classify"})
    if unknown:
        raise ValueError(f"--commands: unknown command(s) {unknown}; choose from inspect, frames, select, classify")
    result = run_fuzz(per_kind, chosen, seed, real, timeout)
    if as_json:
        print(json.dumps(result, indent=1))
    else:
        table = Table(title=f"masnn bench fuzz: {result['runs']} runs")
        table.add_column("outcome")
        for command in chosen:
            table.add_column(command, justify="right")
        for name in OUTCOMES:
            table.add_row(name, *(str(result["table"][name][c]) for c in chosen))
        console.print(table)
    if result["bad"]:
        raise typer.Exit(1)


@bench_app.command("gpu")
def bench_gpu(
    device: str = typer.Option("auto", metavar=DEVICE_METAVAR, help="auto, cuda or cuda:N: the GPU to check. cpu: the check's own logic at tiny sizes (Triton under its interpreter)."),
    quick: bool = typer.Option(False, "--quick", help="Fewer sizes and steps: about half the time."),
    budget: float = typer.Option(240.0, min=1, callback=finite, help="Seconds; a group that would start later is skipped, with that reason."),
    only: str = typer.Option("", help="Comma-separated groups (default all): lif, bandwidth, spikingjelly, training, loader, inference, distributed."),
    out: Optional[Path] = typer.Option(None, help="Write the JSON report here, atomically, after every group (a run cut short leaves what it had)."),
    as_json: bool = typer.Option(False, "--json", help="Print the JSON report instead of the table."),
):
    """The GPU path in one run (sized for 4 minutes on one H200): Triton LIF against the reference loop (every
    reset and surrogate, 1e3 to 1e8 neuron-steps, fp32/bf16/fp16), the kernels' bandwidth against a torch copy and
    SpikingJelly's CUDA LIF, training steps of the 3-layer TCSA net at T = 60 in fp32 and bf16 autocast, the data
    loader against the model, inference latency, throughput and agreement with the CPU copy, torchrun/NCCL with two
    GPUs or more. Exit code 1 if a correctness check failed. Without CUDA: one line, exit code 0."""
    from masnn.bench.gpu_report import run_command

    code = run_command(device, quick, budget, only, out, as_json)
    if code:
        raise typer.Exit(code)
