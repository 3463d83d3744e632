"""The `masnn` command line."""
from __future__ import annotations

import json
import sys
import warnings
from pathlib import Path
from typing import Optional

import typer
from masnn.datasets.events import EventFileError
from rich.console import Console
from rich.markup import escape
from rich.table import Table

app = typer.Typer(add_completion=False, pretty_exceptions_enable=False, no_args_is_help=True,
                  help="Event-camera action recognition with MA-SNN.")
bench_app = typer.Typer(no_args_is_help=True, help="Benchmarks (speed and memory targets).")
app.add_typer(bench_app, name="bench")
synth_app = typer.Typer(no_args_is_help=True, help="Synthetic DVS recordings of people: gestures, gait, single clips.")
app.add_typer(synth_app, name="synth")
console = Console()


@app.command()
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


@app.command()
def classify(
    file: Optional[Path] = typer.Argument(None, help="A recording (AEDAT4, AEDAT 3.1/2.0, EVT, npz, text). Default: the shipped sample clip."),
    weights: Optional[str] = typer.Option(None, help="A shipped model's name (see masnn models --shipped) or a checkpoint path. Default: gesture-tcsa."),
    window: Optional[float] = typer.Option(None, help="Window in ms (default: the model's T x dt; other values change dt to window / T)."),
    stride: Optional[float] = typer.Option(None, help="Stride in ms, rounded to whole frames (default: half a window)."),
    top_k: int = typer.Option(3, "--top-k", min=1),
    mode: str = typer.Option("auto", help="auto (clip up to 8 s, else timeline), clip or timeline."),
    min_events: int = typer.Option(200, help="Windows with fewer events are idle: no action claimed."),
    as_json: bool = typer.Option(False, "--json", help="Print the report as JSON (schema: masnn/classify_schema.json)."),
    render: Optional[Path] = typer.Option(None, help="Write an annotated video (.mp4 or .gif): events, prediction, spikes, attention."),
    device: str = typer.Option("auto", help="auto, cpu or cuda."),
):
    """The action in a recording (a clip), or a timeline of actions (a long recording), with spikes, NASAR,
    SOPs and energy for each prediction and in total."""
    from masnn.classify import (
        SAMPLE_RECORDING,
        Classifier,
        ClassifyOptions,
        classify_recording,
        shipped_file,
    )
    from masnn.report import classify_tables
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

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
    with Progress(*columns, console=Console(stderr=True), transient=True, disable=as_json) as bars:
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


@app.command()
def inspect(
    path: Path = typer.Argument(..., help="An event recording (AEDAT 2/3.1/4, .npy/.npz, text, Prophesee)."),
    start: Optional[float] = typer.Option(None, help="Seconds after the first event."),
    end: Optional[float] = typer.Option(None, help="Seconds after the first event."),
    as_json: bool = typer.Option(False, "--json"),
):
    """Format, sensor, duration, event count and rate of a recording."""
    from masnn.datasets.stats import summarize

    summary = summarize(path, _seconds_to_us(start), _seconds_to_us(end))
    if as_json:
        print(json.dumps(summary, indent=2))
        return
    table = Table(title=str(path), show_header=False)
    for key, value in summary.items():
        table.add_row(key.replace("_", " "), f"{value:,.3f}" if isinstance(value, float) else str(value))
    console.print(table)


@app.command()
def frames(
    path: Path = typer.Argument(..., help="An event recording."),
    out: Path = typer.Option(..., "--out", "-o", help="frames.npy (counts [T, 2, H, W]) or a .png contact sheet."),
    dt: float = typer.Option(15.0, help="Frame length in milliseconds."),
    n_frames: int = typer.Option(60, "--frames", "-T", help="Number of frames (0: the whole recording)."),
    start: float = typer.Option(0.0, help="Seconds after the first event where frame 0 starts."),
    size: int = typer.Option(32, help="Output side in pixels (0: the sensor's own resolution)."),
    mode: str = typer.Option("crop", help="Spatial mapping: crop (centre square) or stretch."),
    denoise: float = typer.Option(0.0, help="Background-activity filter time in ms (0: off)."),
):
    """Turn a recording into frames [T, 2, H, W] as the classifier sees them."""
    from masnn.datasets.transforms.pipeline import FramingConfig, frame_recording
    from masnn.pictures import save_frames

    config = FramingConfig(dt_us=int(round(dt * 1000)), n_frames=n_frames or None, size=size or None, mode=mode,
                           denoise_us=int(round(denoise * 1000)) or None)
    stack = frame_recording(path, config, start_us=_seconds_to_us(start))
    save_frames(out, stack)
    console.print(f"{path}: {stack.shape[0]} frames of {stack.shape[2]}x{stack.shape[3]}, {int(stack.sum()):,} events -> {out}")


@bench_app.command("ingest")
def bench_ingest(
    events: int = typer.Option(4_000_000, help="Events in the framing benchmark."),
    big_mb: int = typer.Option(1024, help="Size of the recording framed for the memory benchmark (MB)."),
    workdir: Optional[Path] = typer.Option(None, help="Where to write the benchmark's files (default: a temp folder)."),
    as_json: bool = typer.Option(False, "--json"),
):
    """Framing vs tonic, AEDAT 3.1 read rate, AEDAT4 -> frames vs dv-processing, peak memory."""
    from masnn.bench.ingest import run_ingest_benchmarks

    results = run_ingest_benchmarks(events, big_mb, workdir, console if not as_json else None)
    if as_json:
        print(json.dumps(results, indent=2))


@app.command()
def models(
    name: str = typer.Option("ma-snn-3layer", help="A registered model (see the list this prints)."),
    attention: str = typer.Option("TCS", help="none, T, C, S, TC, TS, CS or TCS."),
    placement: str = typer.Option("paper", help="paper, conv-pre, conv-post, activate-pre or reference-code."),
    classes: int = typer.Option(11),
    preset: str = typer.Option("fp32-45nm", help="Energy preset: fp32-45nm, fp16-45nm or int8-45nm."),
    as_json: bool = typer.Option(False, "--json"),
):
    """The registered networks; parameters, neurons and the spike/energy report of one random input window."""
    import torch
    from masnn.models import create_model, list_models
    from masnn.models.accounting import measure

    model = create_model(name, attention=attention, placement=placement, num_classes=classes).eval()
    size = 32 if "3layer" in name else 128
    torch.manual_seed(0)
    shape = (model.steps, 1, 2, size, size)
    x = (torch.rand(shape) < 0.05).float() * torch.randint(1, 4, shape).float()  # event counts, like real frames
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


@app.command("train")
def train_command(
    data: Path = typer.Option(..., help="Dataset folder (DVS128 Gesture original or tonic layout, or DVS128 Gait)."),
    dataset: str = typer.Option("gesture", help="gesture, tonic-gesture or gait."),
    config: Optional[Path] = typer.Option(None, help="A TOML config; flags override it."),
    preset: Optional[str] = typer.Option(None, help="gesture-paper, gait-paper, gesture-cpu-small or gait-cpu-small."),
    out: Optional[str] = typer.Option(None, help="Run folder (checkpoints, metrics)."),
    epochs: Optional[int] = typer.Option(None),
    batch_size: Optional[int] = typer.Option(None),
    lr: Optional[float] = typer.Option(None),
    attention: Optional[str] = typer.Option(None, help="none, T, C, S, TC, TS, CS, TCS."),
    loss: Optional[str] = typer.Option(None, help="mse (the paper's) or ce."),
    scheduler: Optional[str] = typer.Option(None, help="plateau (the paper's), cosine or none."),
    seed: Optional[int] = typer.Option(None),
    cache: Optional[Path] = typer.Option(None, help="Frame cache folder (default: DATA/.masnn-cache)."),
    resume: bool = typer.Option(False, help="Continue from OUT/last.pt."),
    paper_test_selection: bool = typer.Option(False, help="Also score the test split every epoch and keep the best "
                                              "epoch on it (best_test.pt): the paper's optimistic selection, for comparison."),
):
    """Train an MA-SNN. The honest protocol: validation comes from the training users (gesture) or training
    walks (gait) and selects the best epoch (best.pt); the test split is not touched here (see masnn evaluate)
    unless --paper-test-selection asks for the paper's figure, which is labelled as such."""
    from masnn.checkpoint import framing_config
    from masnn.datasets.loaders.cache import FrameDataset
    from masnn.training.config import load_config
    from masnn.training.loop import PAPER_SELECTION, train

    overrides = dict(out_dir=out, epochs=epochs, batch_size=batch_size, lr=lr, attention=attention, loss=loss,
                     scheduler=scheduler, seed=seed)
    cfg = load_config(config, overrides, preset)
    framing = framing_config(cfg.framing, cfg.T)
    train_samples, val_samples = _training_split(dataset, data)
    if not cfg.class_names:
        cfg.class_names = _class_names(dataset, data)
    frame_cache = _frame_cache(cache, data)
    train_set = FrameDataset(train_samples, framing, "random-crop", seed=cfg.seed, cache=frame_cache)
    val_set = FrameDataset(val_samples, framing, "random-crop", seed=cfg.seed + 1, cache=frame_cache) if val_samples else None
    paper_test_set = None
    if paper_test_selection:
        paper_test_set = FrameDataset(_samples(dataset, data, "test"), framing, "random-crop", seed=cfg.seed + 2, cache=frame_cache)
    console.print(f"{len(train_samples)} training and {len(val_samples)} validation samples; {framing}")
    result = train(cfg, train_set, val_set, progress=True, resume=resume, paper_test_set=paper_test_set)
    console.print(f"best validation accuracy: {result['best']} (best.pt); checkpoints and metrics in {cfg.out_dir}")
    if paper_test_set is not None:
        console.print(f"{PAPER_SELECTION}: {result[PAPER_SELECTION]:.4f} (best_test.pt)")


@app.command("export")
def export_command(
    checkpoint: Path = typer.Argument(..., help="A checkpoint written by masnn train (best.pt)."),
    out: Path = typer.Argument(..., help="The slim checkpoint to write (e.g. weights/NAME.pt)."),
    half: bool = typer.Option(True, help="Store weights as float16 (half the size; they load back as float32)."),
):
    """A checkpoint for shipping: model, arguments, config and history; no optimizer or RNG state."""
    from masnn.checkpoint import load_checkpoint, save_checkpoint, slim_checkpoint

    save_checkpoint(slim_checkpoint(load_checkpoint(checkpoint), half), out)
    console.print(f"{out}: {out.stat().st_size / 1e6:.1f} MB")


@app.command("card")
def card_command(
    weights: Path = typer.Argument(..., help="An exported model (masnn export); its card is the .md beside it."),
    report: Path = typer.Option(..., help="Its `masnn evaluate --report` JSON."),
    metrics: Optional[Path] = typer.Option(None, help="The run's metrics.json: the training curve of every epoch "
                                                      "(the checkpoint holds those up to the one it kept)."),
    compare: Optional[Path] = typer.Option(None, help="The report of its counterpart (the vanilla model, or the attention "
                                                      "model for a vanilla card): adds the comparison table."),
):
    """Write the figures of a model card (model, training curve, test results, comparison with vanilla) from the
    checkpoint and its evaluation reports; the card's prose is kept, a missing card is started from a skeleton."""
    from masnn.training.card import card_blocks, update_card

    blocks = card_blocks(weights, report, metrics, compare)
    card = weights.with_suffix(".md")
    update_card(card, blocks)
    console.print(f"{card}: {', '.join(blocks)} written")


@app.command("evaluate")
def evaluate_command(
    checkpoint: Path = typer.Argument(..., help="A checkpoint written by masnn train (best.pt)."),
    data: Path = typer.Option(..., help="Dataset folder."),
    dataset: str = typer.Option("gesture", help="gesture, tonic-gesture or gait."),
    split: str = typer.Option("test"),
    crops: int = typer.Option(10, help="Crops per sample for the paper's vote."),
    vanilla: Optional[Path] = typer.Option(None, help="A vanilla checkpoint: adds rEE."),
    report: Optional[Path] = typer.Option(None, help="Write the JSON report here."),
    confusion: Optional[Path] = typer.Option(None, help="Write the confusion matrix as a PNG here."),
    cache: Optional[Path] = typer.Option(None, help="Frame cache folder (default: DATA/.masnn-cache)."),
):
    """Accuracy (10-crop vote and single crop), per-class accuracy, confusion matrix, spikes, energy.
    Large sets: `torchrun --nproc-per-node N -m masnn evaluate ...` shards the samples over N processes."""
    from masnn.training.evaluate import evaluate, write_confusion_png, write_report

    samples = _samples(dataset, data, split)
    result = evaluate(checkpoint, samples, crops, _frame_cache(cache, data), vanilla_path=vanilla)
    if result is None:  # a torchrun rank other than 0: its share went to rank 0
        return
    if report:
        write_report(result, report)
    if confusion:
        write_confusion_png(result["confusion (rows: true, columns: voted)"], confusion)
    table = Table(title=f"{checkpoint} on {dataset} {split}: {result['samples']} samples", show_header=False)
    for protocol, value in result["accuracy"].items():
        table.add_row(f"accuracy, {protocol}", f"{100 * value:.2f} %")
    for key, value in result["per crop, mean"].items():
        if value is not None:
            table.add_row(key.replace("_", " "), f"{value:,.4g}" if isinstance(value, float) else str(value))
    table.add_row("latency per window", f"{result['latency_ms_per_window']:.1f} ms")
    console.print(table)


@app.command("ablate")
def ablate_command(
    data: Path = typer.Option(..., help="Dataset folder."),
    dataset: str = typer.Option("gesture", help="gesture, tonic-gesture or gait."),
    config: Optional[Path] = typer.Option(None, help="A TOML config; flags override it."),
    preset: Optional[str] = typer.Option("gesture-cpu-small"),
    out: str = typer.Option("runs/ablate", help="Folder for every variant's run."),
    epochs: Optional[int] = typer.Option(None),
    attentions: str = typer.Option(",".join(("none", "T", "C", "S", "TC", "TS", "CS", "TCS")), help="Comma-separated."),
    seeds: str = typer.Option("0", help="Comma-separated seeds: repeat runs give mean and spread."),
    crops: int = typer.Option(10),
    cache: Optional[Path] = typer.Option(None),
    as_json: bool = typer.Option(False, "--json"),
):
    """Train and evaluate vanilla and each attention combination; a table shaped like the paper's Table 6."""
    from masnn.training.ablate import run_ablation
    from masnn.training.config import load_config

    cfg = load_config(config, dict(out_dir=out, epochs=epochs), preset)
    train_samples, val_samples = _training_split(dataset, data)
    test_samples = _samples(dataset, data, "test")
    rows = run_ablation(cfg, train_samples, val_samples, test_samples, _frame_cache(cache, data),
                        tuple(a.strip() for a in attentions.split(",")), tuple(int(s) for s in seeds.split(",")), crops, progress=True)
    if as_json:
        print(json.dumps(rows, indent=2))
        return
    table = Table(title=f"{cfg.model}, {dataset}, {rows[0]['seeds']} seed(s), test split (10-crop vote and centre crop)")
    for column in ("attention", "accuracy vote %", "accuracy single %", "NASAR", "spikes per window", "rEE"):
        table.add_column(column, justify="right")
    for r in rows:
        table.add_row(r["attention"], f"{100 * r['vote']:.2f} ± {100 * r['vote_std']:.2f}", f"{100 * r['single']:.2f} ± {100 * r['single_std']:.2f}",
                      f"{r['nasar']:.3f} ± {r['nasar_std']:.3f}", f"{r['spikes']:,.0f}", f"{r['ree']:.2f}x")
    console.print(table)


def _frame_cache(cache: Optional[Path], data: Path):
    from masnn.datasets.loaders.cache import FrameCache

    return FrameCache(cache or data / ".masnn-cache")


def _samples(dataset: str, root: Path, split: str):
    from masnn.datasets.loaders.gait import gait_samples
    from masnn.datasets.loaders.gesture import gesture_samples, tonic_gesture_samples

    loaders = {"gesture": gesture_samples, "tonic-gesture": tonic_gesture_samples, "gait": gait_samples}
    if dataset not in loaders:
        raise ValueError(f"unknown dataset {dataset!r}; choose one of {', '.join(loaders)}")
    return loaders[dataset](root, split)


def _class_names(dataset: str, root: Path) -> list[str]:
    from masnn.datasets.loaders.gait import gait_subjects
    from masnn.datasets.loaders.table import GESTURE_CLASSES

    return [f"subject {s}" for s in gait_subjects(root)] if dataset == "gait" else list(GESTURE_CLASSES)


def _training_split(dataset: str, root: Path):
    """(train, validation) samples from the training split only: the last ~15% of training users
    (gesture), or every fifth walk of each subject (gait, whose classes are the subjects)."""
    samples = _samples(dataset, root, "train")
    if dataset == "gait":
        return [s for i, s in enumerate(samples) if i % 5], [s for i, s in enumerate(samples) if i % 5 == 0]
    users = sorted({s.subject for s in samples})
    held = set(users[len(users) - max(1, round(0.15 * len(users))):]) if len(users) > 1 else set()
    return [s for s in samples if s.subject not in held], [s for s in samples if s.subject in held]


@bench_app.command("model")
def bench_model(
    neurons: int = typer.Option(1_000_000, help="LIF neurons in the layer."),
    steps: int = typer.Option(60, help="Time steps T."),
    surrogate: str = typer.Option("sigmoid", help="Surrogate gradient (sigmoid is the one SpikingJelly shares)."),
    as_json: bool = typer.Option(False, "--json"),
):
    """LIF forward + backward on the CPU (reference loop vs fused path, vs SpikingJelly if installed), then
    3-layer MA-SNN inference of one 0.9 s window."""
    from masnn.bench.model import (
        lif_benchmark_rows,
        run_inference_benchmark,
        run_lif_benchmark,
    )

    result = run_lif_benchmark(neurons, steps, surrogate=surrogate)
    inference = run_inference_benchmark()
    if as_json:
        print(json.dumps(dict(lif=result, inference=inference), indent=2))
        return
    for label, row in inference["variants"].items():
        agreed = f", same prediction {100 * row['same_prediction']:.0f}% of {row['samples']}" if "samples" in row else ""
        console.print(f"3-layer TCSA inference, T=60, batch 1, {label}: {row['ms']:.0f} ms (target {inference['target_ms']:.0f}){agreed}")
    rows = lif_benchmark_rows(result)
    table = Table(title=f"LIF forward+backward, T={steps}, {neurons:,} neurons")
    for column in rows[0]:
        table.add_column(column)
    for row in rows:
        table.add_row(*row.values())
    console.print(table)


@synth_app.command("gesture")
def synth_gesture(
    out: Path = typer.Option(..., "--out", "-o", help="Folder; the dataset goes into OUT/DvsGesture."),
    users: int = typer.Option(29, help="Subjects (the last ~20% form the test split, as users 24-29 of 29)."),
    seed: int = typer.Option(0),
    preset: str = typer.Option("full", help="full (6 s gestures, 5 lightings), small, or tiny (for tests)."),
    workers: Optional[int] = typer.Option(None, help="Processes (default: all cores)."),
):
    """A DVS128 Gesture dataset in the original layout (AEDAT 3.1 + labels + trial lists)."""
    from masnn.datasets.synth.generator import GESTURE_PRESETS, write_gesture_dataset
    from rich.progress import Progress

    if preset not in GESTURE_PRESETS:
        raise ValueError(f"unknown preset {preset!r}; choose one of {', '.join(GESTURE_PRESETS)}")
    chosen = GESTURE_PRESETS[preset]
    with Progress(console=console, transient=True) as progress:
        task = progress.add_task("recordings", total=users * len(chosen.lightings))
        summary = write_gesture_dataset(out, users, seed, chosen, workers, progress=lambda name: progress.advance(task))
    console.print(f"{summary['recordings']} recordings, {summary['samples']} samples, {summary['events']:,} events -> {summary['folder']}")


@synth_app.command("gait")
def synth_gait(
    out: Path = typer.Option(..., "--out", "-o", help="Folder for train/<id>/*.txt and test/<id>/*.txt."),
    subjects: int = typer.Option(20),
    walks: int = typer.Option(20, help="Walks per subject and session (train: session 1, test: session 2)."),
    seed: int = typer.Option(0),
    duration: float = typer.Option(4.4, help="Seconds per walk."),
    workers: Optional[int] = typer.Option(None),
):
    """A DVS128 Gait dataset in its text layout: identities with their own build and walking style."""
    from masnn.datasets.synth.generator import write_gait_dataset
    from rich.progress import Progress

    with Progress(console=console, transient=True) as progress:
        task = progress.add_task("walks", total=subjects * walks * 2)
        summary = write_gait_dataset(out, subjects, walks, seed, duration, workers, progress=lambda _: progress.advance(task))
    console.print(f"{summary['walks']} walks, {summary['events']:,} events -> {summary['folder']}")


@synth_app.command("recording")
def synth_recording(
    action: str = typer.Option(..., help="A gesture class name, e.g. 'air guitar', or its number 1-11."),
    out: Path = typer.Option(..., "--out", "-o", help="An .aedat4 file."),
    sensor: str = typer.Option("dvs128", help="dvs128, davis346, dvxplorer or dvxplorer-lite."),
    duration: float = typer.Option(3.0, help="Seconds."),
    lighting: str = typer.Option("lab"),
    seed: int = typer.Option(0),
):
    """One AEDAT 4.0 clip of one gesture, at any sensor's resolution."""
    from masnn.datasets.synth.generator import write_action_clip

    count = write_action_clip(out, action, sensor, seed, duration, lighting)
    console.print(f"{count:,} events -> {out}")


@synth_app.command("stats")
def synth_stats(
    paths: list[Path] = typer.Argument(..., help="Recordings to compare side by side."),
    as_json: bool = typer.Option(False, "--json"),
):
    """Event rate, ON/OFF ratio, spatial extent, inter-event intervals, events per pixel."""
    from masnn.datasets.stats import compare_table, recording_stats, stats_json

    results = [recording_stats(path) for path in paths]
    if as_json:
        print(json.dumps(stats_json(results), indent=2))
    else:
        console.print(compare_table(results))


@app.command("live")
def live_command(
    camera: Optional[str] = typer.Option(None, "--camera", help="Camera serial number (default source: the first camera found)."),
    stream: Optional[str] = typer.Option(None, "--stream", help="A DV network stream, tcp://HOST:PORT."),
    replay: Optional[Path] = typer.Option(None, "--replay", help="A recording (any format masnn reads) played as a live stream."),
    speed: float = typer.Option(1.0, help="Replay speed (2: twice real time; 0: as fast as the classifier goes, no window dropped)."),
    weights: Optional[str] = typer.Option(None, help="A shipped model's name or a checkpoint path (default: the shipped gesture model)."),
    window: Optional[float] = typer.Option(None, help="Window in ms (default: the model's T x dt)."),
    stride: float = typer.Option(100.0, help="Milliseconds between predictions, rounded down to whole frames."),
    top_k: int = typer.Option(3, "--top-k"),
    device: str = typer.Option("auto", help="auto, cpu or cuda."),
    log: Optional[Path] = typer.Option(None, "--log", help="Write every prediction (and reconnects, the summary) here as JSON lines."),
    show: bool = typer.Option(False, "--show", help="Open a window with the events the network sees and the label."),
):
    """Classify a live event stream: a camera, a DV network stream or a replayed recording, with a dashboard."""
    from masnn.live.pipeline import LiveOptions, run_live
    from masnn.live.sources import camera_source, replay_source, stream_source

    chosen = [name for name, value in (("--camera", camera), ("--stream", stream), ("--replay", replay)) if value is not None]
    if len(chosen) > 1:
        raise ValueError(f"give one source, not {' and '.join(chosen)}")
    source = stream_source(stream) if stream else replay_source(replay, speed) if replay else camera_source(camera)
    from masnn.classify import (
        Classifier,  # torch loads only once the source looks right
    )

    classifier = Classifier.load(weights, device, window)
    run_live(source, classifier, LiveOptions(stride_ms=stride, top_k=top_k, log=log), console, show)


@bench_app.command("live")
def bench_live(
    rate: float = typer.Option(12e6, help="Input events/s (12 M is the DAVIS346's maximum)."),
    seconds: float = typer.Option(15.0, help="Stream seconds to feed."),
    weights: Optional[str] = typer.Option(None, help="Model (default: the shipped one, else an untrained one)."),
    stride: float = typer.Option(100.0, help="Milliseconds between predictions."),
    device: str = typer.Option("cpu"),
    as_json: bool = typer.Option(False, "--json"),
):
    """The live pipeline fed from memory at a DAVIS346's top rate: sustained events/s, latency, drops, memory."""
    from masnn.bench.live import benchmark_table, run_live_benchmark

    result = run_live_benchmark(rate, seconds, weights, device, stride)
    if as_json:
        print(json.dumps(result, indent=2))
    else:
        console.print(benchmark_table(result))


def _one_line_warning(message, category, filename, lineno, file=None, line=None):
    print(f"warning: {message}", file=sys.stderr)


def main():
    """Entry point: bad input ends with one line on stderr and exit code 2, never a traceback."""
    warnings.showwarning = _one_line_warning
    try:
        app()
    except (EventFileError, ValueError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        sys.exit(130)
