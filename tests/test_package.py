"""Packaging and CLI basics: what an installed masnn puts in site-packages, and `masnn info`."""
import importlib.util
import json
import os
import re
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    # reuse the environment's setuptools where there is one (fast, offline); else pip fetches it
    isolation = [] if importlib.util.find_spec("setuptools") is None else ["--no-build-isolation"]
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", *isolation, "-q", "-w", str(out), str(ROOT)],
        check=True, capture_output=True,
    )
    return next(out.glob("masnn-*.whl"))


def test_wheel_installs_only_the_masnn_package(wheel):
    names = zipfile.ZipFile(wheel).namelist()
    top_level = {name.split("/")[0] for name in names}
    assert top_level == {"masnn", next(n for n in top_level if n.endswith(".dist-info"))}
    # the source folders are mapped under masnn, never installed as top-level app/models/datasets
    for module in ("masnn/cli/__init__.py", "masnn/cli/console.py", "masnn/cli/inference.py", "masnn/cli/training.py",
                   "masnn/cli/live.py", "masnn/cli/bench.py", "masnn/cli/synth.py", "masnn/live/pipeline.py", "masnn/training/loop.py", "masnn/bench/common.py",
                   "masnn/datasets/io/readers.py", "masnn/datasets/transforms/framing.py", "masnn/datasets/loaders/cache.py",
                   "masnn/datasets/synth/generator.py", "masnn/models/lif/layer.py", "masnn/weights/__init__.py"):
        assert module in names


def test_wheel_declares_the_console_script(wheel):
    with zipfile.ZipFile(wheel) as archive:
        entry_points = next(archive.read(n).decode() for n in archive.namelist() if n.endswith("entry_points.txt"))
    assert "masnn = masnn.cli:main" in entry_points


def run_masnn(*args, env_extra: dict | None = None):
    env = {**os.environ, **(env_extra or {})}
    return subprocess.run([sys.executable, "-m", "masnn", *args], capture_output=True, text=True, timeout=120, env=env)


def test_info_reports_versions_devices_and_cameras_without_a_camera():
    result = run_masnn("info", "--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    import numpy
    import torch

    assert report["versions"]["numpy"] == numpy.__version__
    assert report["versions"]["torch"] == torch.__version__
    assert "cpu" in report["devices"]
    assert isinstance(report["cameras"], list)  # none attached here: an empty list, not a failure
    assert report["triton"]


def test_help_lists_the_commands_in_order():
    result = run_masnn("--help")
    assert result.returncode == 0
    listed = [m[1] for m in map(re.compile(r"│ ([a-z]+) ").match, result.stdout.splitlines()) if m]
    assert listed == ["info", "classify", "inspect", "frames", "models", "train", "export", "card", "evaluate", "ablate", "calibrate",
                      "live", "bench", "synth"]


def test_models_command_reports_the_published_neuron_count():
    result = run_masnn("models", "--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert "ma-snn-3layer" in report["models"] and "ma-snn-5layer" in report["models"]
    assert report["neurons"] == 106_763
    layers = report["report (random input, untrained)"]["layers"]
    assert [layer["name"] for layer in layers] == ["conv1", "conv2", "conv3", "fc1", "fc2"]


def test_models_command_leaves_the_global_rng_alone():
    import torch
    from typer.testing import CliRunner

    from masnn.cli import app
    from masnn.models import create_model

    torch.manual_seed(123)
    create_model("ma-snn-3layer", attention="TCS", placement="paper", num_classes=11)  # the command builds this too
    expected = torch.rand(4)
    torch.manual_seed(123)
    result = CliRunner().invoke(app, ["models", "--json"])
    assert result.exit_code == 0, result.output
    assert torch.equal(torch.rand(4), expected)


def test_version_short_help_and_unbroken_sentences():
    from importlib.metadata import version

    assert run_masnn("--version").stdout.strip() == f"masnn {version('masnn')}"
    assert run_masnn("classify", "-h").stdout == run_masnn("classify", "--help").stdout
    wide = run_masnn("classify", "--help", env_extra={"COLUMNS": "300"}).stdout
    # the docstring's first sentence runs on one line: the source's line ends are not kept
    assert any("with spikes, NASAR, SOPs and energy for each prediction" in line for line in wide.splitlines())
