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
from masnn.cli.checks import MS_MIN, denoise_us, finite
from masnn.cli.choices import (
    BOTH_WAYS_HELP,
    DEVICE_METAVAR,
    Attention,
    ClassifyMode,
    EnergyPreset,
    FrameMode,
    ModelName,
    Placement,
    TableFormat,
)
from masnn.cli.console import console
from masnn.cli.errors import reading

commands = typer.Typer()


@commands.command()
def info(as_json: bool = typer.Option(False, "--json", help="Print JSON instead of tables.", show_default=True)):
    """Versions, torch devices, Triton, connected DVS cameras and the shipped models."""
    from masnn import info as about
    from masnn.shipped import shipped_models

    report = {"versions": about.package_versions(), "devices": about.torch_devices(), "triton": about.triton_status()}
    found, problem = about.cameras()
    report["cameras"] = found
    if problem:
        report["camera_discovery"] = problem
    report["shipped_models"] = shipped_models()
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
    for model in report["shipped_models"]:
        table.add_row(f"shipped {model['name']}", f"{model['task']}, {model['classes']} classes, {_framing_text(model['framing'])}, "
                      f"attention {model['attention']}")
    console.print(table)
    console.print("shipped models: masnn models --shipped; use one with --weights NAME (or its checkpoint path)")


def _framing_text(framing: dict) -> str:
    """T x dt = window, size, mode (and the filter): `20 x 45 ms = 0.9 s, 32x32 crop, denoise 10 ms`."""
    size = f"{framing['size']}x{framing['size']}" if framing.get("size") else "sensor size"
    denoise = f", denoise {framing['denoise_us'] / 1000:g} ms" if framing.get("denoise_us") else ""
    return (f"{framing['T']} x {framing['dt_us'] / 1000:g} ms = {framing['window_us'] / 1e6:g} s, {size} "
            f"{framing.get('mode', 'crop')}{denoise}")


def _class_list(names: list[str], count: int, shown: int = 3) -> str:
    """`11: hand clap, right hand wave, left hand wave, ... other gestures`."""
    if not names:
        return str(count)
    if len(names) <= shown + 1:
        return f"{count}: {', '.join(names)}"
    return f"{count}: {', '.join(names[:shown])}, ... {names[-1]}"


def shipped_table(models: list[dict]) -> list:
    """What `masnn models --shipped` prints: a table (name, task, classes, framing, attention, size), then each
    model's classes (abbreviated) and card."""
    table = Table(title="shipped models (--weights NAME; evaluate, export, card NAME)", box=None, pad_edge=False)
    for column in ("name", "task", "classes", "framing (T x dt = window)", "attention"):
        table.add_column(column, justify="right" if column == "classes" else "left", no_wrap=True)
    for m in models:
        table.add_row(m["name"], m["task"], str(m["classes"]), _framing_text(m["framing"]), m["attention"])
    lines = [f"{m['name']} ({m['bytes'] / 1e6:.1f} MB): classes {_class_list(m['class_names'], m['classes'])}; "
             f"card {m['card'] or 'none'}" for m in models]
    return [table, *(escape(line) for line in lines)]


@commands.command()
def classify(
    files: Optional[list[Path]] = typer.Argument(None, help="Recordings (AEDAT4, AEDAT 3.1/2.0, EVT, npz, text) or folders of them. Default: the shipped sample clip."),
    weights: Optional[str] = typer.Option(None, help="A shipped model's name (see masnn models --shipped) or a checkpoint path. Default: gesture-tcsa."),
    window: Optional[float] = typer.Option(None, min=MS_MIN, callback=finite, help="Window in ms (default: the model's T x dt; other values change dt to window / T)."),
    stride: Optional[float] = typer.Option(None, min=MS_MIN, callback=finite, help="Stride in ms, rounded to whole frames (default: half a window)."),
    top_k: int = typer.Option(3, "--top-k", min=1, help="Classes listed for each prediction, most probable first."),
    mode: ClassifyMode = typer.Option("auto", help="auto: a clip up to 8 s, a timeline beyond; clip: one prediction for the whole recording; timeline: segments."),
    min_events: int = typer.Option(200, min=0, help="Windows with fewer events are idle: no action claimed."),
    start: Optional[float] = typer.Option(None, min=0, callback=finite, help="Classify from this many seconds after the first event."),
    end: Optional[float] = typer.Option(None, min=0, callback=finite, help="Classify up to this many seconds after the first event."),
    labels: Optional[Path] = typer.Option(None, help="A DVS128 Gesture labels CSV (class,startTime_usec,endTime_usec) of the one recording: "
                                          "score its timeline against the true segments."),
    as_json: bool = typer.Option(False, "--json", help="Print the report as JSON (schema: masnn/classify_schema.json); JSON lines for several files."),
    fmt: TableFormat = typer.Option("table", "--format", help="Several files: one row per file, as a table, CSV or JSON lines."),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="Several files: write the CSV or JSONL rows to this file instead of printing them."),
    render: Optional[Path] = typer.Option(None, callback=checks.suffix(".mp4", ".gif"), help="Write an annotated video (.mp4 or .gif): events, prediction, spikes, attention."),
    device: str = typer.Option("auto", callback=checks.device, metavar=DEVICE_METAVAR, help="auto (a GPU where there is one), cpu, cuda or cuda:N."),
    both_ways: Optional[bool] = typer.Option(None, "--both-ways/--one-way", help=BOTH_WAYS_HELP, show_default=False),
    variants: bool = typer.Option(False, "--variants", help="Clips: classify each also played backwards, mirrored, and both "
                                  "(an arm circle's sense reverses, a mirror swaps right and left): one row each."),
):
    """The action in a recording (a clip), or a timeline of actions (a long recording), with spikes, NASAR,
    SOPs and energy for each prediction and in total. Several files or folders: one row per recording."""
    from masnn.classify import SAMPLE_RECORDING, Classifier, ClassifyOptions, shipped_file

    paths = list(files or [shipped_file(SAMPLE_RECORDING)])
    single = len(paths) == 1 and not paths[0].is_dir() and not variants
    if not single:
        for name, value in (("--labels", labels), ("--render", render)):
            if value is not None:
                got = "--variants" if variants else f"{len(paths)} paths or a folder"
                raise ValueError(f"{name}: takes one recording (got {got})")
    if out is not None and (single or fmt == "table" or as_json):
        raise ValueError("--out: writes the CSV or JSONL rows of several files: give --format csv or jsonl and several files")
    if labels is not None:
        if start is not None or end is not None:
            raise ValueError("--labels: scores the whole recording: leave out --start and --end")
        if not labels.is_file():
            raise ValueError(f"{labels}: no such file")
        mode = "timeline"
    options = ClassifyOptions(window, stride, top_k, min_events=min_events, mode=mode, start_s=start, end_s=end)
    if single:
        if not paths[0].exists():
            raise ValueError(f"{paths[0]}: no such file")
        classifier = Classifier.load(weights, device, window, both_ways=both_ways)
        _classify_one(paths[0], classifier, options, as_json, render, stride, labels)
        return
    from masnn.batch import find_recordings

    recordings = find_recordings(paths)
    if not recordings:
        raise ValueError(f"{', '.join(map(str, paths))}: no recordings found")
    classifier = Classifier.load(weights, device, window, both_ways=both_ways)
    _classify_many(recordings, classifier, options, as_json, fmt, out, variants)


def _classify_one(path: Path, classifier, options, as_json: bool, render: Optional[Path], stride: Optional[float], labels: Optional[Path]) -> None:
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    from masnn.classify import classify_recording
    from masnn.report import classify_tables

    renderer = None
    if render is not None:
        from masnn.render import Renderer

        stride_ms = stride or classifier.window_us / 2000
        renderer = Renderer(render, classifier, max(1, round(stride_ms * 1000 / classifier.framing.dt_us)), recording=path)
    columns = (TextColumn("[bold]classifying"), BarColumn(), TextColumn("{task.completed:.1f} s"), TimeElapsedColumn())
    if labels is not None:  # checked before the work: a wrong labels file ends at once
        from masnn.labels import labelled_segments, recording_span

        with reading(path):
            span = recording_span(path)
        labelled_segments(labels, *span, classifier.class_names)
    errors = Console(stderr=True)
    # no bar where stderr is not a terminal: it would leave a blank line among the one-line warnings and errors
    with Progress(*columns, console=errors, transient=True, disable=as_json or not errors.is_terminal) as bars, reading(path):
        task = bars.add_task("", total=None)
        if renderer is None:
            report = classify_recording(path, classifier, options, progress=lambda s: bars.update(task, completed=s))
        else:
            with renderer:
                report = classify_recording(path, classifier, options, on_window=renderer.add, progress=lambda s: bars.update(task, completed=s))
    if labels is not None:
        from masnn.labels import score_report

        report["labels"] = score_report(report, labels, *span)
    if as_json:
        print(json.dumps(report, indent=1))
        return
    for renderable in classify_tables(report):
        console.print(renderable)
    if labels is not None:
        from masnn.labels import labels_tables

        for renderable in labels_tables(report["labels"]):
            console.print(renderable)
    if render is not None:
        console.print(f"video -> {render}")


def _classify_many(recordings: list[Path], classifier, options, as_json: bool, fmt: str, out: Optional[Path],
                   variants: bool = False) -> None:
    from masnn.batch import classify_each, error_row, rows_table, rows_text, summary_row
    from masnn.classify import classify_recording
    from masnn.variants import classify_variants

    def classify(path: Path) -> list[dict]:
        return classify_variants(path, classifier, options) if variants else [classify_recording(path, classifier, options)]

    rows = []
    for path, reports, error in classify_each(recordings, classify):
        for report in reports or [None]:
            rows.append(error_row(path, error) if error else summary_row(report))
            if as_json:
                print(json.dumps(report if error is None else {"file": str(path), "error": error}), flush=True)
    if not as_json:
        if out is not None:
            from masnn.datasets.io.writers import atomic_path

            with atomic_path(out) as temporary:
                temporary.write_text(rows_text(rows, fmt))
            console.print(f"{len(rows)} rows -> {out}")
        elif fmt == "table":
            console.print(rows_table(rows))
        else:
            print(rows_text(rows, fmt), end="")
    failed = [row for row in rows if row["error"]]
    if failed:
        errors = Console(stderr=True, highlight=False, soft_wrap=True)
        for row in failed:
            errors.print(f"error: {escape(row['error'])}")
        errors.print(f"{len(failed)} of {len(rows)} recordings failed: {escape(', '.join(row['file'] for row in failed))}")
        raise typer.Exit(2)


def _seconds_to_us(value: Optional[float]) -> Optional[int]:
    return None if value is None else int(round(value * 1e6))


@commands.command()
def inspect(
    path: Path = typer.Argument(..., help="An event recording (AEDAT 2/3.1/4, .npy/.npz, text, Prophesee)."),
    start: Optional[float] = typer.Option(None, min=0, callback=finite, help="Seconds after the first event."),
    end: Optional[float] = typer.Option(None, min=0, callback=finite, help="Seconds after the first event."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table."),
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
        text = "x".join(map(str, value)) if key == "sensor" else f"{value:,.3f}" if isinstance(value, float) else str(value)
        table.add_row(key.replace("_", " "), text)
    console.print(table)


@commands.command()
def frames(
    path: Path = typer.Argument(..., help="An event recording."),
    out: Path = typer.Option(..., "--out", "-o", callback=checks.suffix(".npy", ".png", ".jpg", ".jpeg"), help="frames.npy (counts [T, 2, H, W]) or a .png contact sheet."),
    weights: Optional[str] = typer.Option(None, help="Frame as this model does: a shipped model's name (see masnn models --shipped) or a checkpoint path. Default: gesture-tcsa.", show_default=False),
    dt: Optional[float] = typer.Option(None, min=MS_MIN, max=10_000, callback=finite, help="Frame length in milliseconds. Default: the model's (45 for gesture-tcsa).", show_default=False),
    n_frames: Optional[int] = typer.Option(None, "--frames", "-T", min=0, help="Number of frames (0: the whole recording). Default: the model's T (20 for gesture-tcsa).", show_default=False),
    start: float = typer.Option(0.0, min=0, callback=finite, help="Seconds after the first event where frame 0 starts.", show_default=True),
    size: Optional[int] = typer.Option(None, min=0, max=4096, help="Output side in pixels (0: the sensor's own resolution). Default: the model's (32).", show_default=False),
    mode: Optional[FrameMode] = typer.Option(None, help="Spatial mapping: crop (centre square) or stretch. Default: the model's (crop).", show_default=False),
    denoise: Optional[float] = typer.Option(None, min=0, max=10_000, callback=finite, help="Background-activity filter time in ms (0: off). Default: the model's (off).", show_default=False),
):
    """Turn a recording into frames [T, 2, H, W] as the classifier sees them: the framing of the default model
    (or of --weights); --dt, -T, --size, --mode and --denoise override it."""
    from masnn.checkpoint import checkpoint_framing, load_checkpoint
    from masnn.datasets.transforms.pipeline import FramingConfig, frame_recording
    from masnn.pictures import save_frames
    from masnn.shipped import resolve_weights

    checkpoint = resolve_weights(weights)
    with reading(checkpoint):
        ckpt = load_checkpoint(checkpoint)
    model = checkpoint_framing(ckpt)
    config = FramingConfig(
        dt_us=model.dt_us if dt is None else int(round(dt * 1000)),
        n_frames=model.n_frames if n_frames is None else n_frames or None,
        size=model.size if size is None else size or None,
        mode=model.mode if mode is None else mode,
        denoise_us=model.denoise_us if denoise is None else denoise_us(denoise))
    with reading(path):
        _check_frames_fit(path, config)
        stack = frame_recording(path, config, start_us=_seconds_to_us(start))
    title = f"{path.name}: {stack.shape[0]} frames of {config.dt_us / 1000:g} ms from {start:g} s ({checkpoint.stem} framing)"
    save_frames(out, stack, dt_us=config.dt_us, title=title)
    console.print(f"{path}: {stack.shape[0]} frames of {config.dt_us / 1000:g} ms, {stack.shape[2]}x{stack.shape[3]} "
                  f"({checkpoint.stem}'s framing{' with overrides' if (dt, n_frames, size, mode, denoise) != (None,) * 5 else ''}), "
                  f"{int(stack.sum()):,} events -> {out}")


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
    shipped: bool = typer.Option(False, "--shipped", help="List the shipped (trained) models instead: task, classes, framing, attention, size, card.", show_default=True),
    name: ModelName = typer.Option("ma-snn-3layer", help="A registered model.", show_default=True),
    attention: Attention = typer.Option("TCS", help="Attention: none or letters of T, C, S (the paper's TA, TCSA, ... too).", show_default=True),
    placement: Placement = typer.Option("paper", help="Where the gates sit: the paper's, conv-pre, conv-post, activate-pre, or the authors' code's.", show_default=True),
    classes: int = typer.Option(11, min=1, max=100_000, help="Output classes of the network.", show_default=True),
    preset: EnergyPreset = typer.Option("fp32-45nm", help="Energy per operation (Horowitz 2014, 45 nm).", show_default=True),
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of tables.", show_default=True),
):
    """The registered networks; parameters, neurons and the spike/energy report of one random input window.
    --shipped: the trained models that ship with masnn, by the names --weights takes."""
    if shipped:
        from masnn.shipped import shipped_models

        found = shipped_models()
        if as_json:
            print(json.dumps(found, indent=2))
        else:
            for renderable in shipped_table(found):
                console.print(renderable)
        return
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
    console.print(f"registered: {', '.join(summary['models'])} (trained ones: masnn models --shipped)")
    console.print(f"{name} attention={attention} placement={placement}: {summary['parameters']:,} parameters, {report.neurons:,} neurons")
    table = Table(title=f"one random window, T={report.steps}, {preset} (untrained weights)")
    for column in ("layer", "neurons", "spikes", "firing rate", "SOPs", "MACs", "attention MACs", "energy µJ"):
        table.add_column(column, justify="right")
    for layer in report.layers:
        table.add_row(layer.name, f"{layer.neurons:,}", f"{layer.spikes:,.0f}", f"{layer.firing_rate:.3f}", f"{layer.sops:,.0f}",
                      f"{layer.macs:,.0f}", f"{layer.attention_macs:,.0f}", f"{layer.energy_pj / 1e6:.2f}")
    table.add_row("total", f"{report.neurons:,}", f"{report.spikes:,.0f}", f"NASAR {report.nasar:.3f}", f"{report.sops:,.0f}",
                  f"{report.macs:,.0f}", f"{report.attention_macs:,.0f}", f"{report.energy_pj / 1e6:.2f}")
    console.print(table)
    console.print(f"ANN of the same shape: {report.ann_frame_by_frame_energy_pj / 1e6:.1f} µJ frame by frame, "
                  f"{report.ann_single_frame_energy_pj / 1e6:.2f} µJ single frame")

