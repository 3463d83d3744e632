"""`masnn synth`: synthetic DVS datasets and clips, and statistics to compare them with real recordings."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer

from masnn.cli.checks import finite
from masnn.cli.choices import Lighting, PixelModel, Sensor, SynthPreset
from masnn.cli.console import console
from masnn.cli.errors import reading
from masnn.datasets.loaders.table import GESTURE_CLASSES

# a lenient lookup, not a Literal: any unique prefix, any case, - or _ for a space, or the class number
ACTION_HELP = (f"A gesture: {', '.join(GESTURE_CLASSES)} (any unique prefix; - or _ for spaces), or its number "
               f"1-{len(GESTURE_CLASSES)}.")

synth_app = typer.Typer(no_args_is_help=True, help="Synthetic DVS recordings of people: gestures, gait, single clips.")


@synth_app.command("gesture")
def synth_gesture(
    out: Path = typer.Option(..., "--out", "-o", help="Folder; the dataset goes into OUT/DvsGesture."),
    users: int = typer.Option(29, min=1, help="Subjects (the last ~20% form the test split, as users 24-29 of 29)."),
    seed: int = typer.Option(0, min=0, help="Seed of the subjects, gestures and noise: the same seed, the same dataset."),
    preset: SynthPreset = typer.Option("full", help="full (6 s gestures, 5 lightings), small, or tiny (for tests)."),
    sits: float = typer.Option(0.0, min=0.0, max=1.0, help="Share of the no-gesture interludes that cut to another "
                               "camera, which sees the person sit down and stand up (0: none, the shipped models' data)."),
    pixels: PixelModel = typer.Option("measured", help="measured: the camera's pixels as measured on real DVS128 "
                                      "Gesture clips (slow and spread bandwidths, references anywhere between the "
                                      "thresholds, readout repeats, ON rebounds, the lens's glare); ideal: the same cameras "
                                      "without those, crisp edges (a first stage of training)."),
    workers: Optional[int] = typer.Option(None, min=1, help="Processes (default: all cores)."),
):
    """A DVS128 Gesture dataset in the original layout (AEDAT 3.1 + labels + trial lists)."""
    from dataclasses import replace

    from rich.progress import Progress

    from masnn.datasets.synth.generator import GESTURE_PRESETS, write_gesture_dataset

    chosen = replace(GESTURE_PRESETS[preset], sit_share=sits, pixels=pixels)
    with Progress(console=console, transient=True) as progress:
        task = progress.add_task("recordings", total=users * len(chosen.lightings))
        summary = write_gesture_dataset(out, users, seed, chosen, workers, progress=lambda name: progress.advance(task))
    console.print(f"{summary['recordings']} recordings, {summary['samples']} samples, {summary['events']:,} events -> {summary['folder']}")


@synth_app.command("gait")
def synth_gait(
    out: Path = typer.Option(..., "--out", "-o", help="Folder for train/<id>/*.txt and test/<id>/*.txt."),
    subjects: int = typer.Option(20, min=1, help="Identities (people walking)."),
    walks: int = typer.Option(20, min=1, help="Walks per subject and session (train: session 1, test: session 2)."),
    seed: int = typer.Option(0, min=0, help="Seed of the identities, walks and noise: the same seed, the same dataset."),
    duration: float = typer.Option(4.4, min=0.1, max=3600, callback=finite, help="Seconds per walk."),
    workers: Optional[int] = typer.Option(None, min=1, help="Processes (default: all cores)."),
):
    """A DVS128 Gait dataset in its text layout: identities with their own build and walking style."""
    from rich.progress import Progress

    from masnn.datasets.synth.generator import write_gait_dataset

    with Progress(console=console, transient=True) as progress:
        task = progress.add_task("walks", total=subjects * walks * 2)
        summary = write_gait_dataset(out, subjects, walks, seed, duration, workers, progress=lambda _: progress.advance(task))
    console.print(f"{summary['walks']} walks, {summary['events']:,} events -> {summary['folder']}")


@synth_app.command("recording")
def synth_recording(
    action: str = typer.Option(..., metavar="<NAME|1-11>", help=ACTION_HELP),
    out: Path = typer.Option(..., "--out", "-o", help="An .aedat4 file."),
    sensor: Sensor = typer.Option("dvs128", help="The camera whose resolution the clip has (128x128, 346x260, 640x480, 320x240)."),
    duration: float = typer.Option(3.0, min=0.1, max=3600, callback=finite, help="Seconds."),
    lighting: Lighting = typer.Option("lab", help="Lighting: its flicker and noise."),
    seed: int = typer.Option(0, min=0, help="Seed of the subject and noise."),
):
    """One AEDAT 4.0 clip of one gesture, at any sensor's resolution."""
    from masnn.datasets.synth.generator import write_action_clip

    count = write_action_clip(out, action, sensor, seed, duration, lighting)
    console.print(f"{count:,} events -> {out}")


@synth_app.command("stats")
def synth_stats(
    paths: list[Path] = typer.Argument(..., help="Recordings to compare side by side."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table."),
):
    """Event rate, ON/OFF ratio, spatial extent, inter-event intervals, events per pixel."""
    from masnn.datasets.stats import compare_table, recording_stats, stats_json

    results = []
    for path in paths:
        with reading(path):
            results.append(recording_stats(path))
    if as_json:
        print(json.dumps(stats_json(results), indent=2))
    else:
        console.print(compare_table(results))


@synth_app.command("realism")
def synth_realism(
    real: Path = typer.Option(..., "--real", envvar="MASNN_REAL_DATA",
                              help="Folder of real recordings of people (default: $MASNN_REAL_DATA)."),
    synthetic: Path = typer.Option(..., "--synthetic", help="A `masnn synth gesture` folder, a folder of clips, or one clip."),
    windows: int = typer.Option(12, min=1, help="Most windows from each real recording; twice as many synthetic ones in all."),
    users: Optional[int] = typer.Option(None, min=1, help="Only the first N subjects of a gesture folder (compare sets of one size)."),
    seed: int = typer.Option(0, min=0, help="Seed of the synthetic windows and the classifiers."),
    json_out: Optional[Path] = typer.Option(None, "--json", help="Also write the report to this JSON file."),
):
    """How real synthetic recordings look, in the default model's windows: real and synthetic statistics side by side, and how well small classifiers tell the two apart (leave one real recording out; 50% = indistinguishable)."""
    from masnn.checkpoint import checkpoint_framing, load_checkpoint
    from masnn.datasets.io.writers import atomic_path
    from masnn.realism import realism_report, report_tables
    from masnn.shipped import resolve_weights

    report = realism_report(real, synthetic, checkpoint_framing(load_checkpoint(resolve_weights(None))), windows, seed, users)
    for table in report_tables(report):
        console.print(table)
    if json_out is not None:
        with atomic_path(json_out) as temporary:
            temporary.write_text(json.dumps(report, indent=1))
