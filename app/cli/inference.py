"""`masnn info, classify, inspect, frames, models`: what is installed, what a recording holds and what a
network makes of it."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

import masnn.cli.checks as checks
from masnn.cli.checks import MS_MIN, finite
from masnn.cli.console import console
from masnn.cli.errors import reading

commands = typer.Typer()


@commands.command()
def info(as_json: bool = typer.Option(False, "--json", help="Print JSON instead of tables.")):
    """Versions, torch devices, Triton, and connected DVS cameras."""
    from masnn import info as about

    report = {"versions": about.package_versions(), "devices": about.torch_devices(), "triton": about.triton_status()}
    found, problem = about.cameras()
    report["cameras"] = found
    if problem:
        report["camera_discovery"] = problem
    if as_json:
        print(json.dumps(report, indent=2))
        return
    table = Table(title="masnn", show_header=False)
    for name, value in report["versions"].items():
        table.add_row(name, value or "not installed")
    for name, value in report["devices"].items():
        table.add_row(f"device {name}", value)
    table.add_row("triton", escape(report["triton"]))
    table.add_row("cameras", escape(", ".join(found) or (problem or "none connected")))
    console.print(table)


@commands.command()
def classify(
    file: Optional[Path] = typer.Argument(None, help="A recording (AEDAT4, AEDAT 3.1/2.0, EVT, npz, text). Default: the shipped sample clip."),
    weights: Optional[str] = typer.Option(None, help="A shipped model's name (see masnn models --shipped) or a checkpoint path. Default: gesture-tcsa."),
    window: Optional[float] = typer.Option(None, min=MS_MIN, callback=finite, help="Window in ms (default: the model's T x dt; other values change dt to window / T)."),
    stride: Optional[float] = typer.Option(None, min=MS_MIN, callback=finite, help="Stride in ms, rounded to whole frames (default: half a window)."),
    top_k: int = typer.Option(3, "--top-k", min=1),
    mode: str = typer.Option("auto", callback=checks.one_of("auto", "clip", "timeline"), help="auto (clip up to 8 s, else timeline), clip or timeline."),
    min_events: int = typer.Option(200, min=0, help="Windows with fewer events are idle: no action claimed."),
    as_json: bool = typer.Option(False, "--json", help="Print the report as JSON (schema: masnn/classify_schema.json)."),
    render: Optional[Path] = typer.Option(None, callback=checks.suffix(".mp4", ".gif"), help="Write an annotated video (.mp4 or .gif): events, prediction, spikes, attention."),
    device: str = typer.Option("auto", callback=checks.device, help="auto, cpu, cuda or cuda:N."),
):
    """The action in a recording (a clip), or a timeline of actions (a long recording), with spikes, NASAR,
    SOPs and energy for each prediction and in total."""
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    from masnn.classify import SAMPLE_RECORDING, Classifier, ClassifyOptions, classify_recording, shipped_file
    from masnn.report import classify_tables

    path = file if file is not None else shipped_file(SAMPLE_RECORDING)
    if not path.exists():
        raise ValueError(f"{path}: no such file")
    options = ClassifyOptions(window, stride, top_k, min_events=min_events, mode=mode)
    classifier = Classifier.load(weights, device, window)
    renderer = None
    if render is not None:
        from masnn.render import Renderer

        stride_ms = stride or classifier.window_us / 2000
        renderer = Renderer(render, classifier, max(1, round(stride_ms * 1000 / classifier.framing.dt_us)))
    columns = (TextColumn("[bold]classifying"), BarColumn(), TextColumn("{task.completed:.1f} s"), TimeElapsedColumn())
    errors = Console(stderr=True)
    # no bar where stderr is not a terminal: it would leave a blank line among the one-line warnings and errors
    with Progress(*columns, console=errors, transient=True, disable=as_json or not errors.is_terminal) as bars, reading(path):
        task = bars.add_task("", total=None)
        if renderer is None:
            report = classify_recording(path, classifier, options, progress=lambda s: bars.update(task, completed=s))
        else:
            with renderer:
                report = classify_recording(path, classifier, options, on_window=renderer.add, progress=lambda s: bars.update(task, completed=s))
    if as_json:
        print(json.dumps(report, indent=1))
        return
    for renderable in classify_tables(report):
        console.print(renderable)
    if render is not None:
        console.print(f"video -> {render}")


def _seconds_to_us(value: Optional[float]) -> Optional[int]:
    return None if value is None else int(round(value * 1e6))


@commands.command()
def inspect(
    path: Path = typer.Argument(..., help="An event recording (AEDAT 2/3.1/4, .npy/.npz, text, Prophesee)."),
    start: Optional[float] = typer.Option(None, min=0, callback=finite, help="Seconds after the first event."),
    end: Optional[float] = typer.Option(None, min=0, callback=finite, help="Seconds after the first event."),
    as_json: bool = typer.Option(False, "--json"),
):
    """Format, sensor, duration, event count and rate of a recording."""
    from masnn.datasets.stats import summarize

    if start is not None and end is not None and end <= start:
        raise ValueError(f"--end: must come after --start (got {end} s, --start {start} s)")
    with reading(path):
        summary = summarize(path, _seconds_to_us(start), _seconds_to_us(end))
    if as_json:
        print(json.dumps(summary, indent=2))
        return
    table = Table(title=str(path), show_header=False)
    for key, value in summary.items():
        table.add_row(key.replace("_", " "), f"{value:,.3f}" if isinstance(value, float) else str(value))
    console.print(table)


@commands.command()
def frames(
    path: Path = typer.Argument(..., help="An event recording."),
    out: Path = typer.Option(..., "--out", "-o", callback=checks.suffix(".npy", ".png", ".jpg", ".jpeg"), help="frames.npy (counts [T, 2, H, W]) or a .png contact sheet."),
    dt: float = typer.Option(15.0, min=MS_MIN, max=10_000, callback=finite, help="Frame length in milliseconds."),
    n_frames: int = typer.Option(60, "--frames", "-T", min=0, help="Number of frames (0: the whole recording)."),
    start: float = typer.Option(0.0, min=0, callback=finite, help="Seconds after the first event where frame 0 starts."),
    size: int = typer.Option(32, min=0, max=4096, help="Output side in pixels (0: the sensor's own resolution)."),
    mode: str = typer.Option("crop", callback=checks.one_of("crop", "stretch"), help="Spatial mapping: crop (centre square) or stretch."),
    denoise: float = typer.Option(0.0, min=0, max=10_000, callback=finite, help="Background-activity filter time in ms (0: off)."),
):
    """Turn a recording into frames [T, 2, H, W] as the classifier sees them."""
    from masnn.datasets.transforms.pipeline import FramingConfig, frame_recording
    from masnn.pictures import save_frames

    config = FramingConfig(dt_us=int(round(dt * 1000)), n_frames=n_frames or None, size=size or None, mode=mode,
                           denoise_us=int(round(denoise * 1000)) or None)
    with reading(path):
        _check_frames_fit(path, config)
        stack = frame_recording(path, config, start_us=_seconds_to_us(start))
    save_frames(out, stack)
    console.print(f"{path}: {stack.shape[0]} frames of {stack.shape[2]}x{stack.shape[3]}, {int(stack.sum()):,} events -> {out}")


MAX_FRAMES_BYTES = 8 << 30  # int16 counts; a stack this large is a mistake (a microsecond dt over hours)


def _check_frames_fit(path: Path, config) -> None:
    """Refuse, before framing, a stack of frames larger than MAX_FRAMES_BYTES."""
    from masnn.datasets.io.readers import open_recording

    with open_recording(path) as recording:
        sensor = recording.info.sensor_size
        frames = config.n_frames or _duration_us(recording) // config.dt_us + 1
    width, height = config.output_size(sensor)
    size = frames * 2 * width * height * 2
    if size > MAX_FRAMES_BYTES:
        raise ValueError(f"{path}: {frames:,} frames of {width}x{height} would take {size / 2**30:,.0f} GiB (at most "
                         f"{MAX_FRAMES_BYTES / 2**30:.0f}); use a longer --dt, fewer --frames or a smaller --size")


def _duration_us(recording) -> int:
    """First to last event: from the header where the format has it, else from a pass over the timestamps."""
    if recording.info.time_range is not None:
        first, last = recording.info.time_range
        return last - first
    first = last = None
    for chunk in recording.chunks():
        first = int(chunk["t"][0]) if first is None else first
        last = int(chunk["t"][-1])
    return last - first


@commands.command()
def models(
    name: str = typer.Option("ma-snn-3layer", callback=checks.model_name, help="A registered model (see the list this prints)."),
    attention: str = typer.Option("TCS", callback=checks.attention, help="none, T, C, S, TC, TS, CS or TCS."),
    placement: str = typer.Option("paper", callback=checks.placement, help="paper, conv-pre, conv-post, activate-pre or reference-code."),
    classes: int = typer.Option(11, min=1, max=100_000),
    preset: str = typer.Option("fp32-45nm", callback=checks.energy_preset, help="Energy preset: fp32-45nm, fp16-45nm or int8-45nm."),
    as_json: bool = typer.Option(False, "--json"),
):
    """The registered networks; parameters, neurons and the spike/energy report of one random input window."""
    import torch

    from masnn.models import create_model, list_models
    from masnn.models.accounting import measure

    model = create_model(name, attention=attention, placement=placement, num_classes=classes).eval()
    size = 32 if "3layer" in name else 128
    shape = (model.steps, 1, 2, size, size)
    window = torch.Generator().manual_seed(0)  # the same input every run, and the caller's global RNG left alone
    active = torch.rand(shape, generator=window) < 0.05
    x = active.float() * torch.randint(1, 4, shape, generator=window).float()  # event counts, like real frames
    with torch.inference_mode():
        report = measure(model, x, preset)
    summary = {
        "models": list_models(), "model": name, "attention": attention, "placement": placement,
        "parameters": sum(p.numel() for p in model.parameters()), "neurons": report.neurons,
        "report (random input, untrained)": report.to_dict(),
    }
    if as_json:
        print(json.dumps(summary, indent=2, default=str))
        return
    console.print(f"registered: {', '.join(summary['models'])}")
    console.print(f"{name} attention={attention} placement={placement}: {summary['parameters']:,} parameters, {report.neurons:,} neurons")
    table = Table(title=f"one random window, T={report.steps}, {preset} (untrained weights)")
    for column in ("layer", "neurons", "spikes", "firing rate", "SOPs", "MACs", "attention MACs", "energy uJ"):
        table.add_column(column, justify="right")
    for layer in report.layers:
        table.add_row(layer.name, f"{layer.neurons:,}", f"{layer.spikes:,.0f}", f"{layer.firing_rate:.3f}", f"{layer.sops:,.0f}",
                      f"{layer.macs:,.0f}", f"{layer.attention_macs:,.0f}", f"{layer.energy_pj / 1e6:.2f}")
    table.add_row("total", f"{report.neurons:,}", f"{report.spikes:,.0f}", f"NASAR {report.nasar:.3f}", f"{report.sops:,.0f}",
                  f"{report.macs:,.0f}", f"{report.attention_macs:,.0f}", f"{report.energy_pj / 1e6:.2f}")
    console.print(table)
    console.print(f"ANN of the same shape: {report.ann_frame_by_frame_energy_pj / 1e6:.1f} uJ frame by frame, "
                  f"{report.ann_single_frame_energy_pj / 1e6:.2f} uJ single frame")

