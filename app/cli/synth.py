"""`masnn synth`: synthetic DVS datasets and clips, and statistics to compare them with real recordings."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer

import masnn.cli.checks as checks
from masnn.cli.checks import finite
from masnn.cli.console import console
from masnn.cli.errors import reading

synth_app = typer.Typer(no_args_is_help=True, help="Synthetic DVS recordings of people: gestures, gait, single clips.")


@synth_app.command("gesture")
def synth_gesture(
    out: Path = typer.Option(..., "--out", "-o", help="Folder; the dataset goes into OUT/DvsGesture."),
    users: int = typer.Option(29, min=1, help="Subjects (the last ~20% form the test split, as users 24-29 of 29)."),
    seed: int = typer.Option(0, min=0),
    preset: str = typer.Option("full", help="full (6 s gestures, 5 lightings), small, or tiny (for tests)."),
    workers: Optional[int] = typer.Option(None, min=1, help="Processes (default: all cores)."),
):
    """A DVS128 Gesture dataset in the original layout (AEDAT 3.1 + labels + trial lists)."""
    from rich.progress import Progress

    from masnn.datasets.synth.generator import GESTURE_PRESETS, write_gesture_dataset

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
    subjects: int = typer.Option(20, min=1),
    walks: int = typer.Option(20, min=1, help="Walks per subject and session (train: session 1, test: session 2)."),
    seed: int = typer.Option(0, min=0),
    duration: float = typer.Option(4.4, min=0.1, max=3600, callback=finite, help="Seconds per walk."),
    workers: Optional[int] = typer.Option(None, min=1),
):
    """A DVS128 Gait dataset in its text layout: identities with their own build and walking style."""
    from rich.progress import Progress

    from masnn.datasets.synth.generator import write_gait_dataset

    with Progress(console=console, transient=True) as progress:
        task = progress.add_task("walks", total=subjects * walks * 2)
        summary = write_gait_dataset(out, subjects, walks, seed, duration, workers, progress=lambda _: progress.advance(task))
    console.print(f"{summary['walks']} walks, {summary['events']:,} events -> {summary['folder']}")


def _lighting(value: str) -> str:
    from masnn.datasets.synth.generator import LIGHTINGS

    return checks.one_of(*LIGHTINGS)(value)


@synth_app.command("recording")
def synth_recording(
    action: str = typer.Option(..., help="A gesture class name, e.g. 'air guitar', or its number 1-11."),
    out: Path = typer.Option(..., "--out", "-o", help="An .aedat4 file."),
    sensor: str = typer.Option("dvs128", callback=checks.one_of("dvs128", "davis346", "dvxplorer", "dvxplorer-lite"), help="dvs128, davis346, dvxplorer or dvxplorer-lite."),
    duration: float = typer.Option(3.0, min=0.1, max=3600, callback=finite, help="Seconds."),
    lighting: str = typer.Option("lab", callback=_lighting, help="lab, fluorescent, fluorescent_led, led or natural."),
    seed: int = typer.Option(0, min=0),
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

    results = []
    for path in paths:
        with reading(path):
            results.append(recording_stats(path))
    if as_json:
        print(json.dumps(stats_json(results), indent=2))
    else:
        console.print(compare_table(results))

