"""`masnn live`: classify a camera, a network stream or a replayed recording as it arrives."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

import masnn.cli.checks as checks
from masnn.cli.checks import MS_MIN, finite
from masnn.cli.choices import BOTH_WAYS_HELP, DEVICE_METAVAR
from masnn.cli.console import console

commands = typer.Typer()


@commands.command("live")
def live_command(
    camera: Optional[str] = typer.Option(None, "--camera", help="Camera serial number (default source: the first camera found)."),
    stream: Optional[str] = typer.Option(None, "--stream", help="A DV network stream, tcp://HOST:PORT."),
    replay: Optional[Path] = typer.Option(None, "--replay", help="A recording (any format masnn reads) played as a live stream."),
    speed: float = typer.Option(1.0, min=0, callback=finite, help="Replay speed (2: twice real time; 0: as fast as the classifier goes, no window dropped)."),
    weights: Optional[str] = typer.Option(None, help="A shipped model's name or a checkpoint path (default: the shipped gesture model)."),
    window: Optional[float] = typer.Option(None, min=MS_MIN, callback=finite, help="Window in ms (default: the model's T x dt)."),
    stride: float = typer.Option(100.0, min=MS_MIN, callback=finite, help="Milliseconds between predictions, rounded down to whole frames."),
    top_k: int = typer.Option(3, "--top-k", min=1, help="Classes shown for each prediction, most probable first."),
    device: str = typer.Option("auto", callback=checks.device, metavar=DEVICE_METAVAR, help="auto (a GPU where there is one), cpu, cuda or cuda:N."),
    log: Optional[Path] = typer.Option(None, "--log", help="Write every prediction (and reconnects, the summary) here as JSON lines."),
    show: bool = typer.Option(False, "--show", help="Open a window with the events the network sees and the label."),
    both_ways: Optional[bool] = typer.Option(None, "--both-ways/--one-way", help=BOTH_WAYS_HELP, show_default=False),
):
    """Classify a live event stream: a camera, a DV network stream or a replayed recording, with a dashboard."""
    from masnn.live.pipeline import LiveOptions, run_live
    from masnn.live.sources import camera_source, check_camera, replay_source, stream_source

    chosen = [name for name, value in (("--camera", camera), ("--stream", stream), ("--replay", replay)) if value is not None]
    if len(chosen) > 1:
        raise ValueError(f"give one source, not {' and '.join(chosen)}")
    if not (stream or replay):
        check_camera(camera)  # within seconds, before the model loads
    source = stream_source(stream) if stream else replay_source(replay, speed) if replay else camera_source(camera)
    from masnn.classify import Classifier  # torch loads only once the source looks right

    classifier = Classifier.load(weights, device, window, both_ways=both_ways)
    run_live(source, classifier, LiveOptions(stride_ms=stride, top_k=top_k, log=log), console, show)
