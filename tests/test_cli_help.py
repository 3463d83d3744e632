"""Every parameter of every command has a help line, and every option with a fixed set of values lists them in
--help and refuses anything else with the list (a Literal type, which typer turns into a choice)."""
from __future__ import annotations

import typing

import pytest
import typer

from masnn.cli import app
from masnn.cli.choices import DEVICE_METAVAR


def _commands(command, path=()):
    """(path, command) for every command of the click tree under ``command``, groups included."""
    yield path, command
    for name, sub in getattr(command, "commands", {}).items():
        yield from _commands(sub, (*path, name))


def _params():
    for path, command in _commands(typer.main.get_command(app)):
        for param in command.params:
            yield " ".join(path), param


def _choices(param) -> tuple | None:
    """The values of a Literal-typed parameter (Optional unwrapped), else None."""
    annotation = param.type_descriptor.annotation
    if typing.get_origin(annotation) is typing.Union:
        annotation = next(a for a in typing.get_args(annotation) if a is not type(None))
    return typing.get_args(annotation) if typing.get_origin(annotation) is typing.Literal else None


def _name(param) -> str:
    return next((o for o in param.opts if o.startswith("--")), param.name)


def _library_lists() -> dict[str, tuple]:
    """What the library checks each choice against (imports torch: only in the test)."""
    from masnn.batch import FORMATS
    from masnn.classify import MODES
    from masnn.datasets.loaders.table import DATASETS, SPLITS
    from masnn.datasets.synth.generator import GESTURE_PRESETS, LIGHTINGS, PIXEL_MODELS, SENSORS
    from masnn.datasets.transforms.spatial import SPATIAL_MODES
    from masnn.models import list_models
    from masnn.models.accounting import ENERGY_PRESETS
    from masnn.models.attention import PLACEMENTS
    from masnn.models.lif import SURROGATES
    from masnn.training.config import TRAIN_PRESETS

    return {"format": FORMATS, "classify mode": MODES, "frame mode": SPATIAL_MODES, "model": tuple(list_models()),
            "placement": PLACEMENTS, "energy": tuple(ENERGY_PRESETS), "surrogate": SURROGATES, "dataset": tuple(DATASETS),
            "split": SPLITS, "train preset": tuple(TRAIN_PRESETS), "synth preset": tuple(GESTURE_PRESETS),
            "pixel model": PIXEL_MODELS, "sensor": tuple(SENSORS), "lighting": LIGHTINGS}


# (command, option) -> the list its choices must equal: a key of _library_lists, or the values themselves where the
# library has no list to compare with (attention: checked by parsing; loss, scheduler: TrainConfig's inline checks)
CHOICE_OPTIONS = {
    ("classify", "--format"): "format",
    ("classify", "--mode"): "classify mode",
    ("frames", "--mode"): "frame mode",
    ("models", "--name"): "model",
    ("models", "--attention"): "attention",
    ("models", "--placement"): "placement",
    ("models", "--preset"): "energy",
    ("train", "--dataset"): "dataset",
    ("train", "--preset"): "train preset",
    ("train", "--attention"): "attention",
    ("train", "--loss"): ("mse", "ce"),
    ("train", "--scheduler"): ("plateau", "cosine", "none"),
    ("evaluate", "--dataset"): "dataset",
    ("evaluate", "--split"): "split",
    ("ablate", "--dataset"): "dataset",
    ("ablate", "--preset"): "train preset",
    ("calibrate", "--dataset"): "dataset",
    ("calibrate", "--split"): ("validation", "test"),
    ("bench model", "--surrogate"): "surrogate",
    ("bench model", "--part"): ("all", "lif", "inference", "window"),
    ("synth gesture", "--preset"): "synth preset",
    ("synth gesture", "--pixels"): "pixel model",
    ("synth recording", "--sensor"): "sensor",
    ("synth recording", "--lighting"): "lighting",
}
# values from an open set (any CUDA device index) or lists: a callback checks them, the metavar shows their form
DEVICE_OPTIONS = {("classify", "--device"), ("train", "--device"), ("evaluate", "--device"), ("calibrate", "--device"),
                  ("live", "--device"), ("bench live", "--device"), ("bench gpu", "--device")}


def test_every_parameter_of_every_command_has_help():
    missing = [f"{path} {_name(p)}" for path, p in _params() if not (getattr(p, "help", None) or "").strip()]
    assert missing == []


def test_options_with_a_fixed_set_of_values_are_choices():
    found = {(path, _name(p)) for path, p in _params() if _choices(p) is not None}
    assert found == set(CHOICE_OPTIONS)  # a new choice option is listed above, and every listed one is a choice
    devices = {(path, _name(p)) for path, p in _params() if p.name == "device"}
    assert devices == DEVICE_OPTIONS
    assert all(p.metavar == DEVICE_METAVAR for path, p in _params() if (path, _name(p)) in DEVICE_OPTIONS)


def test_the_choices_are_the_librarys():
    from masnn.models.attention import ATTENTIONS, parse_attention
    from masnn.training.config import TrainConfig

    lists = _library_lists()
    params = {(path, _name(p)): p for path, p in _params()}
    for key, expected in CHOICE_OPTIONS.items():
        choices = _choices(params[key])
        if expected == "attention":  # every spelling parses, and together they give every combination
            assert {parse_attention(c) for c in choices} == set(ATTENTIONS)
        elif key[1] in ("--loss", "--scheduler"):
            for value in choices:
                TrainConfig(**{key[1][2:]: value})  # accepted by the config (raises otherwise)
            assert choices == expected
        else:
            assert choices == (lists[expected] if isinstance(expected, str) else expected), key


def test_help_lists_the_choices(capsys):
    with pytest.raises(SystemExit):
        app(["classify", "--help"], standalone_mode=True)
    out = capsys.readouterr().out
    assert "table|csv|jsonl" in out and "auto|clip|timeline" in out and "auto|cpu|cuda|cuda:N" in out
