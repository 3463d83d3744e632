"""Option checks that run while the command line is parsed, before any work: typer's ``min``/``max`` give the
numeric ranges (and show them in ``--help``); these callbacks add what a range cannot say (finite numbers,
choices, device names, lists), and raise ``typer.BadParameter``, which ``main`` prints as one line
(``error: --device: ...``). Lists of names that need torch are imported only when the option is checked."""
from __future__ import annotations

import math
from pathlib import Path

import typer

MS_MIN = 0.001  # durations in milliseconds: one microsecond, the timestamps' unit, is the shortest


def finite(value: float | None) -> float | None:
    """NaN fails typer's ranges already; infinity passes a lower bound, and no duration or rate is infinite."""
    if value is not None and not math.isfinite(value):
        raise typer.BadParameter(f"must be a finite number (got {value})")
    return value


def positive(value: float | None) -> float | None:
    """A finite number above 0, for rates and learning rates (a minimum shown in --help would be arbitrary)."""
    if value is not None and not (math.isfinite(value) and value > 0):
        raise typer.BadParameter(f"must be a finite number above 0 (got {value})")
    return value


def one_of(*choices: str):
    """A callback that accepts only ``choices`` (None, an unset option, passes)."""
    def check(value: str | None) -> str | None:
        if value is not None and value not in choices:
            raise typer.BadParameter(f"must be one of {', '.join(choices)} (got {value!r})")
        return value
    return check


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


def attention(value: str | None) -> str | None:
    """none, T, C, S, TC, TS, CS or TCS (the paper's spellings TA, TCSA, ... too)."""
    if value is None:
        return None
    from masnn.models.attention import parse_attention

    try:
        parse_attention(value)
    except ValueError as e:
        raise typer.BadParameter(str(e)) from None
    return value


def attention_list(value: str) -> str:
    """Comma-separated attentions (ablate)."""
    for name in value.split(","):
        attention(name.strip())
    return value


def seed_list(value: str) -> str:
    """Comma-separated whole numbers (ablate's seeds)."""
    for seed in value.split(","):
        if not seed.strip().isdigit():
            raise typer.BadParameter(f"must be comma-separated whole numbers (got {value!r})")
    return value


def model_name(value: str) -> str:
    from masnn.models import list_models

    return one_of(*list_models())(value)


def placement(value: str) -> str:
    from masnn.models.attention import PLACEMENTS

    return one_of(*PLACEMENTS)(value)


def energy_preset(value: str) -> str:
    from masnn.models.accounting import ENERGY_PRESETS

    return one_of(*ENERGY_PRESETS)(value)


def surrogate(value: str) -> str:
    from masnn.models.lif import SURROGATES

    return one_of(*SURROGATES)(value)
