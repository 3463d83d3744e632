"""Option checks that run while the command line is parsed, before any work: typer's ``min``/``max`` give the
numeric ranges and ``masnn.cli.choices``' Literal types the fixed sets of values (both shown in ``--help``); these
callbacks add what neither can say (finite numbers, device names, suffixes, comma-separated lists), and raise
``typer.BadParameter``, which ``main`` prints as one line (``error: --device: ...``)."""
from __future__ import annotations

import math
from pathlib import Path
from typing import get_args

import typer

from masnn.cli.choices import Attention

MS_MIN = 0.001  # durations in milliseconds: one microsecond, the timestamps' unit, is the shortest


def finite(value: float | None) -> float | None:
    """NaN fails typer's ranges already; infinity passes a lower bound, and no duration or rate is infinite."""
    if value is not None and not math.isfinite(value):
        raise typer.BadParameter(f"must be a finite number (got {value})")
    return value


def denoise_us(milliseconds: float) -> int | None:
    """A --denoise value (ms, 0: off) as the framing's ``denoise_us`` (None: off)."""
    return int(round(milliseconds * 1000)) or None


def positive(value: float | None) -> float | None:
    """A finite number above 0, for rates and learning rates (a minimum shown in --help would be arbitrary)."""
    if value is not None and not (math.isfinite(value) and value > 0):
        raise typer.BadParameter(f"must be a finite number above 0 (got {value})")
    return value


def suffix(*suffixes: str):
    """A callback for an output path: its suffix says what is written."""
    def check(value: Path | None) -> Path | None:
        if value is not None and value.suffix.lower() not in suffixes:
            raise typer.BadParameter(f"must end in {' or '.join(suffixes)} (got {value})")
        return value
    return check


def device(value: str) -> str:
    """auto, cpu, cuda or cuda:N, and a CUDA device only where there is one (torch is imported only then)."""
    if value in ("auto", "cpu"):
        return value
    from masnn.classify import torch_device

    try:
        torch_device(value)
    except ValueError as e:
        raise typer.BadParameter(str(e).removeprefix("--device: ")) from None
    return value


def attention_list(value: str) -> str:
    """Comma-separated attentions (ablate), each one of --attention's choices."""
    choices = get_args(Attention)
    for name in value.split(","):
        if name.strip() not in choices:
            raise typer.BadParameter(f"must be comma-separated, each one of {', '.join(choices)} (got {name.strip()!r})")
    return value


def seed_list(value: str) -> str:
    """Comma-separated whole numbers (ablate's seeds)."""
    for seed in value.split(","):
        if not seed.strip().isdigit():
            raise typer.BadParameter(f"must be comma-separated whole numbers (got {value!r})")
    return value


def augment_spec(value: str | None) -> str | None:
    """An augmentation spec (masnn.datasets.transforms.augment_recipe), "" for none; imported only when given."""
    if not value:
        return value
    from masnn.datasets.transforms.augment_recipe import parse_augment

    try:
        parse_augment(value)
    except ValueError as e:
        raise typer.BadParameter(str(e)) from None
    return value
