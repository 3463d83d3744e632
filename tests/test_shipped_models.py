"""Finding and using the shipped models: `masnn models --shipped` (and `masnn info`) list every weights/*.pt with
the task, classes and framing (its input filter too) its card states; every command that takes weights takes a
shipped name or a path; an unknown name is one line naming those that exist."""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from importlib import resources
from pathlib import Path

import pytest

WEIGHTS = Path(str(resources.files("masnn.weights")))
NAMES = sorted(name[:-3] for name in os.listdir(WEIGHTS) if name.endswith(".pt"))


def masnn(*args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "masnn", *map(str, args)], capture_output=True, text=True, timeout=300)


def _listed_gesture_layout(root: Path) -> None:
    """The original DVS128 Gesture layout's file lists with one test recording: enough for the sample list."""
    (root / "user01_fluorescent.aedat").touch()
    (root / "trials_to_test.txt").write_text("user01_fluorescent.aedat\n")
    (root / "trials_to_train.txt").write_text("")
    (root / "user01_fluorescent_labels.csv").write_text("class,startTime_usec,endTime_usec\n1,0,100\n")


def test_four_models_ship():
    assert NAMES == ["gait-tcsa", "gait-vanilla", "gesture-tcsa", "gesture-vanilla"]


def test_models_shipped_lists_every_model_as_its_card_states():
    result = masnn("models", "--shipped", "--json")
    assert result.returncode == 0, result.stderr
    listed = {m["name"]: m for m in json.loads(result.stdout)}
    assert sorted(listed) == NAMES
    for name, model in listed.items():
        card = (WEIGHTS / f"{name}.md").read_text()
        assert model["card"] == str(WEIGHTS / f"{name}.md")
        assert model["task"] == name.split("-")[0]  # gesture-*, gait-*
        stated = re.search(r"(\d+) classes, input 2 x (\d+) x \2, T = (\d+) frames of dt = ([\d.]+) ms", card)
        classes, side, steps, dt_ms = int(stated[1]), int(stated[2]), int(stated[3]), float(stated[4])
        assert model["classes"] == len(model["class_names"]) == classes
        framing = model["framing"]
        assert (framing["T"], framing["dt_us"], framing["size"]) == (steps, round(dt_ms * 1000), side)
        assert framing["window_us"] == steps * round(dt_ms * 1000)
        filtered = re.search(r"background-activity filter of ([\d.]+) ms", card)  # stated iff the model filters
        assert framing["denoise_us"] == (round(float(filtered[1]) * 1000) if filtered else None), name
        assert model["attention"] == ("none" if name.endswith("vanilla") else "TCS")
        assert model["bytes"] == (WEIGHTS / f"{name}.pt").stat().st_size
    table = masnn("models", "--shipped")
    assert table.returncode == 0, table.stderr
    for name in NAMES:
        assert name in table.stdout
    assert "20 x 45 ms = 0.9 s" in table.stdout and "20 x 100 ms = 2 s" in table.stdout


def test_info_lists_the_shipped_models_too():
    result = masnn("info", "--json")
    assert result.returncode == 0, result.stderr
    assert [m["name"] for m in json.loads(result.stdout)["shipped_models"]] == NAMES


def test_classify_help_points_at_a_command_that_exists():
    help_text = " ".join(masnn("classify", "--help").stdout.replace("│", " ").split())
    assert "masnn models --shipped" in help_text
    assert masnn("models", "--shipped").returncode == 0


@pytest.mark.parametrize("args", [
    ["evaluate", "no-such-model", "--data", "."],
    ["export", "no-such-model", "out.pt"],
    ["card", "no-such-model", "--report", "r.json"],
    ["frames", "{clip}", "-o", "f.npy", "--weights", "no-such-model"],
    ["classify", "--weights", "no-such-model"],
])
def test_an_unknown_name_is_one_line_naming_the_shipped_models(tmp_path, args):
    clip = WEIGHTS / "sample-gesture.aedat4"
    _listed_gesture_layout(tmp_path)  # evaluate lists the dataset first: a folder it accepts
    result = subprocess.run([sys.executable, "-m", "masnn", *(a.format(clip=clip) for a in args)], capture_output=True,
                            text=True, timeout=300, cwd=tmp_path)
    assert result.returncode == 2
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: no-such-model: "), lines
    assert all(name in lines[0] for name in NAMES)
    assert not (tmp_path / "out.pt").exists() and not (tmp_path / "f.npy").exists()


def test_every_weights_argument_takes_a_name_or_a_path(tmp_path, monkeypatch, capsys):
    """evaluate (and its --vanilla), export and card resolve a shipped name to the shipped file; a path stays."""
    import masnn.training.card as card
    import masnn.training.evaluate as evaluate
    from masnn.cli import main

    seen = []
    monkeypatch.setattr(evaluate, "evaluate", lambda path, *a, vanilla_path=None, **k: seen.append((path, vanilla_path)))
    monkeypatch.setattr(card, "card_blocks", lambda weights, *a: seen.append(weights) or {})
    monkeypatch.setattr(card, "update_card", lambda *a: None)
    _listed_gesture_layout(tmp_path)
    for args in (["evaluate", "gesture-tcsa", "--data", tmp_path, "--vanilla", "gesture-vanilla"],
                 ["card", "gait-tcsa", "--report", tmp_path / "r.json"],
                 ["export", "gesture-vanilla", tmp_path / "slim.pt"],
                 ["export", WEIGHTS / "gait-vanilla.pt", tmp_path / "slim2.pt"]):
        with pytest.raises(SystemExit) as ended:
            main([str(a) for a in args])
        assert ended.value.code == 0, capsys.readouterr().err
    assert seen == [(WEIGHTS / "gesture-tcsa.pt", WEIGHTS / "gesture-vanilla.pt"), WEIGHTS / "gait-tcsa.pt"]
    assert (tmp_path / "slim.pt").stat().st_size > 1_000_000 and (tmp_path / "slim2.pt").stat().st_size > 1_000_000


def test_export_puts_a_background_activity_filter_in_front_of_the_model(tmp_path):
    """--denoise MS sets the exported model's framing (what classify, live, evaluate and calibrate frame with) and
    leaves the weights as they were; --denoise 0 takes it out again."""
    import torch

    from masnn.checkpoint import checkpoint_framing
    from masnn.classify import Classifier

    filtered, plain = tmp_path / "filtered.pt", tmp_path / "plain.pt"
    assert masnn("export", "gesture-vanilla", filtered, "--denoise", "10").returncode == 0
    assert masnn("export", filtered, plain, "--denoise", "0").returncode == 0
    source = torch.load(WEIGHTS / "gesture-vanilla.pt", weights_only=True)
    for path, expected in ((filtered, 10_000), (plain, None)):
        exported = torch.load(path, weights_only=True)
        assert Classifier.load(path, "cpu").framing.denoise_us == expected
        framing = checkpoint_framing(exported)
        assert (framing.dt_us, framing.n_frames, framing.size, framing.mode) == (45_000, 20, 32, "crop")
        assert exported["model"].keys() == source["model"].keys()
        assert all(torch.equal(exported["model"][k], source["model"][k]) for k in source["model"])
    refused = masnn("export", "gesture-vanilla", tmp_path / "x.pt", "--denoise", "-1")
    assert refused.returncode != 0 and "Traceback" not in refused.stderr and not (tmp_path / "x.pt").exists()
