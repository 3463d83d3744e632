"""`masnn train, export, card, evaluate, ablate`: the datasets of masnn.datasets.loaders.table in, checkpoints,
reports and model cards out."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer
from rich.table import Table

import masnn.cli.checks as checks
from masnn.cli.checks import denoise_us, finite
from masnn.cli.choices import (
    BOTH_WAYS_HELP,
    DEVICE_METAVAR,
    Attention,
    CalibrationSplit,
    Dataset,
    Loss,
    Scheduler,
    Split,
    TrainPreset,
)
from masnn.cli.console import console
from masnn.cli.errors import InputError, first_line, reading
from masnn.datasets.loaders.table import DATASETS, find_dataset

*_others, _last = DATASETS
DATASET_HELP = f"{', '.join(_others)} or {_last}."

commands = typer.Typer()


@commands.command("train")
def train_command(
    data: Path = typer.Option(..., help="Dataset folder (DVS128 Gesture original or tonic layout, or DVS128 Gait)."),
    dataset: Dataset = typer.Option("gesture", help=DATASET_HELP, show_default=True),
    config: Optional[Path] = typer.Option(None, help="A TOML config; flags override it.", show_default=False),
    preset: Optional[TrainPreset] = typer.Option(None, help="gesture-paper, gait-paper, gesture-cpu-small, gesture-cpu-sim2real "
                                         "(cpu-small with augmentation for real recordings) or gait-cpu-small. Default "
                                         "(without --config): the paper's on a GPU, the cpu-small one on a CPU.", show_default=False),
    device: str = typer.Option("auto", callback=checks.device, metavar=DEVICE_METAVAR, help="auto (a GPU where there is one), cpu, cuda or cuda:N.", show_default=True),
    out: Optional[str] = typer.Option(None, help="Run folder (checkpoints, metrics). Default: runs/train.", show_default=False),
    epochs: Optional[int] = typer.Option(None, min=1, help="Default: the preset's (paper 300, cpu-small 5).", show_default=False),
    batch_size: Optional[int] = typer.Option(None, min=1, help="Global batch. Default: the preset's (paper 128, cpu-small 16).", show_default=False),
    lr: Optional[float] = typer.Option(None, callback=checks.positive, help="Learning rate (> 0). Default: the preset's (paper 1e-4, cpu-small 1e-3).", show_default=False),
    attention: Optional[Attention] = typer.Option(None, help="none or letters of T, C, S (the paper's TA, TCSA, ... too). Default: TCS.", show_default=False),
    loss: Optional[Loss] = typer.Option(None, help="mse (the paper's) or ce. Default: the preset's.", show_default=False),
    scheduler: Optional[Scheduler] = typer.Option(None, help="plateau (the paper's), cosine or none. Default: the preset's.", show_default=False),
    augment: Optional[str] = typer.Option(None, callback=checks.augment_spec, metavar="<name=value,...>",
                                          help="Event-domain augmentation of the training crops, e.g. "
                                          "'scale=0.8-1.25,rotate=10,shift=0.1,stretch=0.8-1.25,drop=0.3,noise=0.02-0.3' "
                                          "(names: scale rotate shear shift stretch drop polarity noise hot; "
                                          "name=value@p sets a probability); '' is off. Default: the preset's "
                                          "(gesture-cpu-sim2real's recipe; off in the others).", show_default=False),
    time_reversal: Optional[float] = typer.Option(None, min=0.0, max=1.0, metavar="P",
                                                  help="Play this share of the training crops backwards (an arm "
                                                  "circle's label then swaps clockwise and counter-clockwise). "
                                                  "Default: the preset's (gesture-cpu-sim2real's 0.5; 0 in the "
                                                  "others).", show_default=False),
    ema: Optional[float] = typer.Option(None, min=0.0, max=0.9999, metavar="DECAY",
                                        help="Validate and keep a moving average of the weights with this decay per "
                                        "step (e.g. 0.995; 0 is off). Default: the preset's "
                                        "(gesture-cpu-sim2real's 0.995; 0 in the others).", show_default=False),
    amp: Optional[bool] = typer.Option(None, "--amp/--no-amp",
                                       help="Run the synapses under bfloat16 autocast, the neurons integrating in "
                                       "float32: half the time per step on a CPU with AMX (measured); where bfloat16 is "
                                       "emulated, time it first. Default: the config's (off).", show_default=False),
    seed: Optional[int] = typer.Option(None, min=0, help="Seed of weights, crops and batches. Default: 0.", show_default=False),
    cache: Optional[Path] = typer.Option(None, help="Frame cache folder. Default: DATA/.masnn-cache.", show_default=False),
    init: Optional[str] = typer.Option(None, metavar="WEIGHTS",
                                       help="Fine-tune: start from these weights (a run's checkpoint, an exported "
                                       "model or a shipped model's name) of the same network and classes, instead of "
                                       "random ones. Default: random.", show_default=False),
    resume: bool = typer.Option(False, help="Continue from OUT/last.pt.", show_default=True),
    paper_test_selection: bool = typer.Option(False, help="Also score the test split every epoch and keep the best "
                                              "epoch on it (best_test.pt): the paper's optimistic selection, for comparison.",
                                              show_default=True),
):
    """Train an MA-SNN. The honest protocol: validation comes from the training users (gesture) or training
    walks (gait) and selects the best epoch (best.pt); the test split is not touched here (see masnn evaluate)
    unless --paper-test-selection asks for the paper's figure, which is labelled as such. Without --preset or
    --config the preset follows the device: the paper's protocol on a GPU, the CPU-sized one on a CPU."""
    from masnn.checkpoint import framing_config
    from masnn.classify import torch_device
    from masnn.datasets.loaders.augmented import training_set
    from masnn.datasets.loaders.cache import FrameDataset
    from masnn.training.config import device_preset
    from masnn.training.loop import PAPER_BEST_TEST, PAPER_SELECTION, train

    find_dataset(dataset)  # an unknown dataset is refused before the preset line
    overrides = dict(out_dir=out, epochs=epochs, batch_size=batch_size, lr=lr, attention=attention, loss=loss,
                     scheduler=scheduler, augment=augment, time_reversal=time_reversal, ema=ema, amp=amp, seed=seed,
                     device=device)
    if preset is None and config is None:
        preset, line = device_preset(dataset, torch_device(device).type)
        console.print(line, soft_wrap=True)  # one line, never wrapped
    cfg = _load_config(config, overrides, preset)
    if init is not None:
        cfg.init = _initial_weights(init, cfg)
    framing = framing_config(cfg.framing, cfg.T)
    spec = find_dataset(dataset)
    train_samples, val_samples = spec.validation_split(spec.samples(data, "train"))
    if not cfg.class_names:
        cfg.class_names = spec.class_names(data)
    frame_cache = _frame_cache(cache, data)
    train_set = training_set(train_samples, framing, cfg.augment, cfg.seed, frame_cache, cfg.no_gesture,  # augmented as cfg says
                             cfg.time_reversal, cfg.class_names)
    val_set = FrameDataset(val_samples, framing, "random-crop", seed=cfg.seed + 1, cache=frame_cache) if val_samples else None
    paper_test_set = None
    if paper_test_selection:
        paper_test_set = FrameDataset(spec.samples(data, "test"), framing, "random-crop", seed=cfg.seed + 2, cache=frame_cache)
    no_gesture = len(train_set) - len(train_samples)
    console.print(f"{len(train_samples)} training" + (f" (and {no_gesture} without a gesture)" if cfg.no_gesture else "")
                  + f" and {len(val_samples)} validation samples; {framing}"
                  + (f"; training crops augmented: {cfg.augment}" if cfg.augment else "")
                  + (f"; {cfg.time_reversal:.0%} of them played backwards" if cfg.time_reversal else "")
                  + (f"; the weights' moving average (decay {cfg.ema:g} per step) validated and kept" if cfg.ema else "")
                  + ("; the synapses under bfloat16 autocast" if cfg.amp else ""),
                  soft_wrap=True)
    result = train(cfg, train_set, val_set, progress=True, resume=resume, paper_test_set=paper_test_set)
    console.print(f"best validation accuracy: {result['best']} (best.pt); checkpoints and metrics in {cfg.out_dir}")
    if paper_test_set is not None:
        console.print(f"{PAPER_SELECTION}: {result[PAPER_BEST_TEST]:.4f} (best_test.pt)")


@commands.command("export")
def export_command(
    checkpoint: str = typer.Argument(..., help="A checkpoint written by masnn train (best.pt), or a shipped model's name."),
    out: Path = typer.Argument(..., help="The slim checkpoint to write (e.g. weights/NAME.pt)."),
    half: bool = typer.Option(True, help="Store weights as float16 (half the size; they load back as float32).", show_default=True),
    denoise: Optional[float] = typer.Option(None, min=0, max=10_000, callback=finite,
                                            help="Background-activity filter time in ms put in front of the model (its "
                                                 "framing, which classify, live, evaluate and calibrate read; 0: off). "
                                                 "Default: as trained.", show_default=False),
):
    """A checkpoint for shipping: model, arguments, config and history; no optimizer or RNG state."""
    from masnn.checkpoint import load_checkpoint, save_checkpoint, slim_checkpoint, with_denoise
    from masnn.shipped import resolve_weights

    checkpoint = resolve_weights(checkpoint)
    with reading(checkpoint):
        slim = slim_checkpoint(load_checkpoint(checkpoint), half)
    if denoise is not None:
        slim = with_denoise(slim, denoise_us(denoise))
    save_checkpoint(slim, out)
    console.print(f"{out}: {out.stat().st_size / 1e6:.1f} MB")


@commands.command("card")
def card_command(
    weights: str = typer.Argument(..., help="An exported model (masnn export) or a shipped model's name; its card is the .md beside it."),
    report: Path = typer.Option(..., help="Its `masnn evaluate --report` JSON."),
    metrics: Optional[Path] = typer.Option(None, help="The run's metrics.json: the training curve of every epoch "
                                                      "(the checkpoint holds those up to the one it kept). Default: none.",
                                           show_default=False),
    compare: Optional[Path] = typer.Option(None, help="The report of its counterpart (the vanilla model, or the attention "
                                                      "model for a vanilla card): adds the comparison table. Default: none.",
                                           show_default=False),
    real: Optional[Path] = typer.Option(None, help="`masnn classify --json` output of real recordings by these weights "
                                                   "(JSON lines for several files): adds what it names each one, scored "
                                                   "against class NN for a file named classNN_... Default: none.",
                                        show_default=False),
):
    """Write the figures of a model card (model, training curve, test results, comparison with vanilla, real
    recordings) from the checkpoint and its reports; the card's prose is kept, a missing card is started from a
    skeleton."""
    from masnn.shipped import resolve_weights
    from masnn.training.card import card_blocks, update_card

    weights = resolve_weights(weights)
    blocks = card_blocks(weights, report, metrics, compare, real)  # reads five files; its errors name the one at fault
    card = weights.with_suffix(".md")
    update_card(card, blocks)
    console.print(f"{card}: {', '.join(blocks)} written")


@commands.command("evaluate")
def evaluate_command(
    checkpoint: str = typer.Argument(..., help="A checkpoint written by masnn train (best.pt), or a shipped model's name (see masnn models --shipped)."),
    data: Path = typer.Option(..., help="Dataset folder."),
    dataset: Dataset = typer.Option("gesture", help=DATASET_HELP, show_default=True),
    split: Split = typer.Option("test", help="The dataset's split to score.", show_default=True),
    crops: int = typer.Option(10, min=1, help="Crops per sample for the paper's vote.", show_default=True),
    vanilla: Optional[str] = typer.Option(None, help="A vanilla checkpoint or shipped model's name: adds rEE. Default: none.", show_default=False),
    report: Optional[Path] = typer.Option(None, help="Write the JSON report here. Default: none.", show_default=False),
    confusion: Optional[Path] = typer.Option(None, callback=checks.suffix(".png"), help="Write the confusion matrix as a PNG here. Default: none.", show_default=False),
    cache: Optional[Path] = typer.Option(None, help="Frame cache folder. Default: DATA/.masnn-cache.", show_default=False),
    device: str = typer.Option("auto", callback=checks.device, metavar=DEVICE_METAVAR, help="auto (a GPU where there is one), cpu, cuda or cuda:N.", show_default=True),
    both_ways: Optional[bool] = typer.Option(None, "--both-ways/--one-way", help=BOTH_WAYS_HELP, show_default=False),
):
    """Accuracy (10-crop vote and single crop), per-class accuracy, confusion matrix, spikes, energy.
    Large sets: `torchrun --nproc-per-node N -m masnn evaluate ...` shards the samples over N processes."""
    from masnn.report import evaluate_table
    from masnn.shipped import resolve_weights
    from masnn.training.evaluate import evaluate, write_confusion_png, write_report

    samples = find_dataset(dataset).samples(data, split)  # the dataset first, as before: its errors name the folder
    checkpoint = resolve_weights(checkpoint)
    vanilla = resolve_weights(vanilla) if vanilla is not None else None
    result = evaluate(checkpoint, samples, crops, _frame_cache(cache, data), vanilla_path=vanilla, device=device, both_ways=both_ways)
    if result is None:  # a torchrun rank other than 0: its share went to rank 0
        return
    if report:
        write_report(result, report)
    if confusion:
        write_confusion_png(result["confusion"], confusion, result["class_names"])
    console.print(evaluate_table(result, f"{checkpoint} on {dataset} {split}: {result['samples']} samples"))


@commands.command("ablate")
def ablate_command(
    data: Path = typer.Option(..., help="Dataset folder."),
    dataset: Dataset = typer.Option("gesture", help=DATASET_HELP, show_default=True),
    config: Optional[Path] = typer.Option(None, help="A TOML config; flags override it.", show_default=False),
    preset: Optional[TrainPreset] = typer.Option("gesture-cpu-small", help="A training preset (see masnn train --help).", show_default=True),
    out: str = typer.Option("runs/ablate", help="Folder for every variant's run.", show_default=True),
    epochs: Optional[int] = typer.Option(None, min=1, help="Default: the preset's.", show_default=False),
    attentions: str = typer.Option(",".join(("none", "T", "C", "S", "TC", "TS", "CS", "TCS")), callback=checks.attention_list, metavar="<ATTENTION,...>",
                                   help="Comma-separated attentions, each as masnn train --attention takes it.", show_default=True),
    seeds: str = typer.Option("0", callback=checks.seed_list, help="Comma-separated seeds: repeat runs give mean and spread.", show_default=True),
    crops: int = typer.Option(10, min=1, help="Crops per sample for the paper's vote.", show_default=True),
    cache: Optional[Path] = typer.Option(None, help="Frame cache folder. Default: DATA/.masnn-cache.", show_default=False),
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table.", show_default=True),
):
    """Train and evaluate vanilla and each attention combination; a table shaped like the paper's Table 6."""
    from masnn.training.ablate import run_ablation

    cfg = _load_config(config, dict(out_dir=out, epochs=epochs), preset)
    spec = find_dataset(dataset)
    train_samples, val_samples = spec.validation_split(spec.samples(data, "train"))
    test_samples = spec.samples(data, "test")
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


def _initial_weights(spec: str, cfg) -> str:
    """The checkpoint --init names (a shipped model's name or a path), checked before any data is read: readable,
    and for the network and classes the config builds."""
    from masnn.checkpoint import load_checkpoint
    from masnn.shipped import resolve_weights

    path = resolve_weights(spec)
    with reading(path):
        load_checkpoint(path, expect=cfg.model_args())
    return spec  # as given: a shipped model's name stays a name, never this machine's path to it


def _load_config(path: Optional[Path], overrides: dict, preset: Optional[str]):
    """The training config; a TOML file that does not parse, or whose framing table is bad (only a file sets
    one), is named: tomllib's message says only where, the framing's only which key."""
    import tomllib

    from masnn.checkpoint import FieldError
    from masnn.training.config import load_config

    try:
        return load_config(path, overrides, preset)
    except (tomllib.TOMLDecodeError, FieldError) as e:
        if path is None:
            raise
        raise InputError(f"{path}: {first_line(e)}") from e


def _frame_cache(cache: Optional[Path], data: Path):
    from masnn.datasets.loaders.cache import FrameCache

    return FrameCache(cache or data / ".masnn-cache")


@commands.command("calibrate")
def calibrate_command(
    weights: str = typer.Argument(..., help="A checkpoint or a shipped model's name."),
    data: Path = typer.Option(..., help="Dataset folder the model did not train on (or whose validation users it held out)."),
    dataset: Dataset = typer.Option("gesture", help=DATASET_HELP, show_default=True),
    split: CalibrationSplit = typer.Option("validation", help="validation (the training users the trainer held out) or test.", show_default=True),
    kept: float = typer.Option(0.95, min=0.5, max=1.0, help="Fraction of the correct held-out windows kept above the threshold.", show_default=True),
    out: Optional[Path] = typer.Option(None, help="Where to write it. Default: <name>.calibration.json beside the checkpoint.", show_default=False),
    device: str = typer.Option("cpu", callback=checks.device, metavar=DEVICE_METAVAR, help="auto, cpu, cuda or cuda:N.", show_default=True),
    both_ways: Optional[bool] = typer.Option(None, "--both-ways/--one-way", help=BOTH_WAYS_HELP, show_default=False),
):
    """The confidence threshold under which classify and live answer "uncertain", calibrated on held-out data."""
    from masnn.calibration import calibrate, calibration_path
    from masnn.datasets.io.writers import atomic_path
    from masnn.shipped import resolve_weights

    path = resolve_weights(weights)
    result = calibrate(path, data, split, dataset, kept, device, both_ways=both_ways)
    target = out or calibration_path(path)
    with atomic_path(target) as temporary:
        Path(temporary).write_text(json.dumps(result, indent=1) + "\n")
    console.print(f"{target}: threshold {100 * result['threshold']:.1f} % ({result['windows']} windows, "
                  f"{100 * result['accuracy']:.1f} % correct; {result['data']})")

