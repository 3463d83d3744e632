"""masnn evaluate: the report's numbers are a recount of its own per-sample predictions; torchrun shards."""
import hashlib
import json
import os
import re
import shutil
import socket
import subprocess
import sys

import cv2
import numpy as np
import pytest

from masnn.datasets.loaders.cache import FrameDataset
from masnn.datasets.loaders.gesture import gesture_samples
from masnn.datasets.synth.generator import GESTURE_PRESETS, write_action_clip, write_gesture_dataset
from masnn.datasets.transforms.pipeline import FramingConfig
from masnn.training.config import TrainConfig
from masnn.training.evaluate import evaluate, write_confusion_png, write_report
from masnn.training.loop import train


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("eval")
    write_gesture_dataset(root / "data", users=3, seed=2, preset=GESTURE_PRESETS["tiny"], workers=1)
    framing = FramingConfig(dt_us=60_000, n_frames=8, size=32)
    config = TrainConfig(T=8, num_classes=11, epochs=1, batch_size=8, lr=1e-3, out_dir=str(root / "run"),
                         framing={"dt_us": 60_000, "size": 32})
    train(config, FrameDataset(gesture_samples(root / "data", "train"), framing, "random-crop"), progress=False)
    return root


def test_report_is_a_recount_of_its_predictions(trained):
    samples = gesture_samples(trained / "data", "test")
    report = evaluate(trained / "run" / "last.pt", samples, n_crops=3)
    per_sample = report["per_sample"]
    assert report["samples"] == len(samples) == len(per_sample) == 11
    vote = np.mean([sum(p == s["label"] for p in s["crop_predictions"]) > 1.5 for s in per_sample])
    single = np.mean([s["crop_predictions"][1] == s["label"] for s in per_sample])
    assert report["accuracy"]["vote"] == pytest.approx(vote)
    assert report["accuracy"]["single"] == pytest.approx(single)
    confusion = np.array(report["confusion"])
    assert confusion.sum() == 11 and all(confusion[s["label"], s["vote"]] > 0 for s in per_sample)
    mean = report["per_crop_mean"]
    assert report["neurobench"]["activation_sparsity"] == pytest.approx(1 - mean["nasar"])
    assert report["neurobench"]["synaptic_operations"]["effective_macs"] == pytest.approx(mean["macs"] + mean["attention_macs"])
    assert report["framing"]["dt_us"] == 60_000
    assert all(key.isidentifier() for key in [*report, *report["accuracy"], *mean])
    assert report["neurobench"]["parameter_count"] > 2_000_000


def test_stretches_without_a_gesture_are_scored_against_the_calibrated_threshold(trained, tmp_path):
    import torch

    from masnn.checkpoint import build_model, load_checkpoint
    from masnn.datasets.loaders.cache import Sample

    first, fifth = gesture_samples(trained / "data", "test")[0:5:4]  # gestures 2-4 between them: one unlabelled stretch
    weights = tmp_path / "model.pt"
    shutil.copy(trained / "run" / "last.pt", weights)
    assert evaluate(weights, gesture_samples(trained / "data", "test"), n_crops=3)["no_gesture"] is None  # tiny's gaps: 0.1-0.2 s
    # the reference: the plain model's rates on the same crops, as probabilities by hand (MSE: rates over their sum)
    stretch = Sample(first.path, -1, first.end_us + 200_000, fifth.start_us - 200_000, first.subject)
    checkpoint = load_checkpoint(weights)
    crops = FrameDataset([stretch], FramingConfig(dt_us=60_000, n_frames=8, size=32), "crops", n_crops=3)[0][0]
    with torch.no_grad():
        rates = build_model(checkpoint).eval()(crops.transpose(0, 1))
    names = checkpoint["config"]["class_names"] or [str(c) for c in range(11)]
    by_hand = [(float(r.max() / r.sum()) if r.sum() > 0 else 1 / 11, names[int(r.argmax())]) for r in rates]
    bare = evaluate(weights, [first, fifth], n_crops=3)["no_gesture"]
    assert (bare["samples"], bare["crops"], bare["threshold"], bare["uncertain"]) == (1, 3, None, None)
    assert bare["mean_confidence"] == pytest.approx(np.mean([c for c, _ in by_hand]), abs=1e-6)
    assert sum(bare["named"].values()) == 3  # without a calibration nothing is uncertain
    threshold = sorted(c for c, _ in by_hand)[1]
    (tmp_path / "model.calibration.json").write_text(json.dumps({"threshold": threshold}))
    calibrated = evaluate(weights, [first, fifth], n_crops=3)["no_gesture"]
    assert calibrated["threshold"] == threshold
    assert calibrated["uncertain"] == pytest.approx(sum(c < threshold for c, _ in by_hand) / 3)
    assert sum(calibrated["named"].values()) == sum(c >= threshold for c, _ in by_hand)
    assert all(calibrated["named"][name] >= 1 for c, name in by_hand if c >= threshold)


def test_confusion_png_is_a_readable_picture(tmp_path):
    write_confusion_png([[3, 1], [0, 4]], tmp_path / "cm.png")
    image = cv2.imread(str(tmp_path / "cm.png"))
    assert image is not None and min(image.shape[:2]) > 80


def _ink_columns(image: np.ndarray) -> int:
    """How many pixel columns hold dark (text) pixels."""
    return int(((image.min(axis=2) < 100).any(axis=0)).sum())


def test_confusion_png_names_the_classes_on_both_axes_and_counts_the_cells(tmp_path):
    confusion = [[3, 1, 0], [0, 4, 0], [2, 0, 5]]
    short, long = ["a", "b", "c"], ["right arm counter-clockwise", "left hand wave", "air guitar"]
    write_confusion_png(confusion, tmp_path / "short.png", short)
    write_confusion_png(confusion, tmp_path / "long.png", long)
    small, large = cv2.imread(str(tmp_path / "short.png")), cv2.imread(str(tmp_path / "long.png"))
    # the names are written: a longer name widens the row labels and heightens the column labels by as much
    grow = large.shape[1] - small.shape[1]
    assert grow > 100 and large.shape[0] - small.shape[0] == grow
    assert _ink_columns(large) > _ink_columns(small) + 100
    # the axis titles are there even with one-letter names: a line of text above, one written upwards at the left
    assert _ink_columns(small[:22]) > 80 and int((small[:, :22].min(axis=2) < 100).any(axis=1).sum()) > 30
    # each non-empty cell holds its count (dark text on a light cell, light text on a dark one); an empty one none
    top = left = small.shape[0] - 3 * 40 - 1  # the same names above and beside the grid; the title is the wider
    cell = lambda r, c: small[top + r * 40 + 3 : top + (r + 1) * 40 - 3, left + c * 40 + 3 : left + (c + 1) * 40 - 3]
    assert cell(0, 1).min() < 100 and cell(1, 1).max() > 200  # 1 of 4 in a pale cell; 4 of 4 in a dark one
    assert cell(0, 2).min() == cell(0, 2).max() == 255  # empty


def test_evaluate_table_labels_and_units_without_exponents():
    from rich.console import Console

    from masnn.report import evaluate_table

    result = {"samples": 176, "accuracy": {"vote": 172 / 176, "single": 173 / 176}, "latency_ms_per_window": 12.345,
              "per_crop_mean": {"spikes": 15666.4, "nasar": 0.007342, "sops": 7.61e6, "macs": 1.234e8, "attention_macs": 5.5e4,
                                "energy_uj": 222.66, "ann_energy_uj": 7.61e6, "ree_vs_vanilla": None, "energy_preset": "fp32-45nm"}}
    console = Console(width=200, record=True)
    console.print(evaluate_table(result, "gesture-tcsa on gesture test"))
    text = console.export_text()
    assert "e+0" not in text and "_" not in text.replace("gesture-tcsa", "")
    assert "97.73 % (172 of 176)" in text and "98.30 % (173 of 176)" in text
    assert re.search(r"ANN energy, frame by frame.*7,610,000\.0 µJ", text)
    assert re.search(r"SNN energy per inference[│ ]+222\.7 µJ", text)
    assert "7,610,000" in text and "123,400,000" in text and "15,666" in text and "0.0073" in text
    assert "rEE" not in text  # no vanilla given: no row


def test_cli_evaluates_a_shipped_model_by_name(trained, tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "masnn", "evaluate", "gesture-tcsa", "--data", str(trained / "data"), "--crops", "1",
         "--device", "cpu", "--confusion", str(tmp_path / "cm.png")],
        capture_output=True, text=True, timeout=600,
    )
    assert result.returncode == 0, result.stderr
    words = " ".join(result.stdout.split())
    assert "gesture-tcsa.pt on gesture test: 11 samples" in words and "ANN energy, frame by frame" in words
    assert "e+0" not in words
    with_names = cv2.imread(str(tmp_path / "cm.png"))
    write_confusion_png(np.eye(11, dtype=int), tmp_path / "bare.png")
    assert with_names.shape[1] > cv2.imread(str(tmp_path / "bare.png")).shape[1]  # the gesture names, not class 0..10


def test_cli_evaluate_writes_report_and_picture(trained, tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "masnn", "evaluate", str(trained / "run" / "last.pt"), "--data", str(trained / "data"),
         "--crops", "2", "--report", str(tmp_path / "r.json"), "--confusion", str(tmp_path / "cm.png")],
        capture_output=True, text=True, timeout=600,
    )
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "r.json").stat().st_size > 100 and cv2.imread(str(tmp_path / "cm.png")) is not None


def test_checkpoints_with_other_framing_or_garbage_are_refused(trained, tmp_path):
    from masnn.checkpoint import load_checkpoint

    path = trained / "run" / "last.pt"
    assert load_checkpoint(path, expect={"framing": {"dt_us": 60_000, "size": 32}, "num_classes": 11})
    with pytest.raises(ValueError, match="framing"):
        load_checkpoint(path, expect={"framing": {"dt_us": 15_000, "size": 32}})
    garbage = tmp_path / "bad.pt"
    garbage.write_bytes(b"not a checkpoint at all")
    with pytest.raises(ValueError, match="bad.pt"):
        load_checkpoint(garbage)


def test_ablation_table_has_every_variant_and_vanilla_as_the_energy_baseline(trained, tmp_path):
    from masnn.training.ablate import run_ablation

    samples = gesture_samples(trained / "data", "train")
    config = TrainConfig(T=8, num_classes=11, epochs=1, batch_size=8, lr=1e-3, out_dir=str(tmp_path),
                         framing={"dt_us": 60_000, "size": 32})
    rows = run_ablation(config, samples[:11], samples[11:], gesture_samples(trained / "data", "test"),
                        attentions=("TCS",), seeds=(0,), n_crops=2)
    assert [r["attention"] for r in rows] == ["none", "TCS"]  # vanilla added: rEE needs it
    assert rows[0]["ree"] == pytest.approx(1.0)
    assert all(0 <= r["vote"] <= 1 and r["nasar"] >= 0 for r in rows)


def test_training_progress_goes_to_stderr_leaving_stdout_to_the_output(trained, tmp_path, capsys):
    # `masnn ablate --json` prints its table on stdout: the epochs' progress bars must not mix into it
    from masnn.training.ablate import run_ablation

    samples = gesture_samples(trained / "data", "train")
    config = TrainConfig(T=8, num_classes=11, epochs=1, batch_size=8, lr=1e-3, out_dir=str(tmp_path),
                         framing={"dt_us": 60_000, "size": 32})
    run_ablation(config, samples[:11], samples[11:], gesture_samples(trained / "data", "test"),
                 attentions=("none",), seeds=(0,), n_crops=2, progress=True)
    out, err = capsys.readouterr()
    assert out == "" and "epochs" in err


def test_torchrun_two_processes_give_the_one_process_report(trained, tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    common = [str(trained / "run" / "last.pt"), "--data", str(trained / "data"), "--crops", "3"]
    one = subprocess.run([sys.executable, "-m", "masnn", "evaluate", *common, "--report", str(tmp_path / "one.json")],
                         capture_output=True, text=True, timeout=600)
    assert one.returncode == 0, one.stderr
    two = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "--master-addr", "127.0.0.1",
                          "--master-port", str(port), "-m", "masnn", "evaluate", *common, "--report", str(tmp_path / "two.json")],
                         capture_output=True, text=True, timeout=600, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert two.returncode == 0, two.stderr
    a, b = (json.loads((tmp_path / f"{name}.json").read_text()) for name in ("one", "two"))
    assert a["per_sample"] == b["per_sample"] and a["samples"] == b["samples"] == 11
    assert a["accuracy"] == b["accuracy"] and a["confusion"] == b["confusion"]
    assert a["per_crop_mean"]["spikes"] == pytest.approx(b["per_crop_mean"]["spikes"])


def test_card_states_the_evaluated_figures_and_keeps_the_authors_prose(trained, tmp_path):
    weights = tmp_path / "tiny-tcsa.pt"
    shutil.copy(trained / "run" / "last.pt", weights)
    report = evaluate(weights, gesture_samples(trained / "data", "test"), n_crops=3)
    report["no_gesture"] = {"samples": 2, "crops": 6, "mean_confidence": 0.2, "gesture_mean_confidence": 0.61,
                            "threshold": 0.38, "uncertain": 5 / 6, "named": {"hand clap": 1}}  # tiny's gaps hold none
    write_report(report, tmp_path / "tiny-tcsa.json")
    mean = report["per_crop_mean"]
    vanilla = {**report, "checkpoint": "tiny-vanilla.pt", "model": {**report["model"], "attention": "none"},
               "per_crop_mean": {**mean, "nasar": 4 * mean["nasar"]}}
    (tmp_path / "tiny-vanilla.json").write_text(json.dumps(vanilla))

    def card(*extra):
        return subprocess.run([sys.executable, "-m", "masnn", "card", str(weights), "--report", str(tmp_path / "tiny-tcsa.json"),
                               *extra], capture_output=True, text=True, timeout=300)

    assert card("--compare", str(tmp_path / "tiny-vanilla.json")).returncode == 0
    text = weights.with_suffix(".md").read_text()
    voted_right = sum(sum(p == s["label"] for p in s["crop_predictions"]) >= 2 for s in report["per_sample"])
    assert hashlib.sha256(weights.read_bytes()).hexdigest() in text
    assert f"({voted_right} of 11)" in text and "75.0 % lower" in text  # a recount, and NASAR 4x the vanilla's
    assert "| 1 | " in text and "T = 8 frames of dt = 60 ms" in text  # the training curve; the framing
    assert ("2 of them, 6 crops): mean confidence 0.20, against 0.61 on the gesture crops; 83.33 % of them are "
            "uncertain under the calibrated threshold 0.38, the others named: hand clap 1.") in text

    weights.with_suffix(".md").write_text(text.replace("What it was trained and tested on", "Our own words"))
    assert card().returncode == 0  # rewrites the figures it has, keeps the rest
    again = weights.with_suffix(".md").read_text()
    assert "Our own words" in again and again.count("<!-- masnn card: results -->") == 1 and "75.0 % lower" in again

    other_run = tmp_path / "other-metrics.json"
    other_run.write_text(json.dumps([{"epoch": 1, "train_loss": 9.0, "train_acc": 0.1, "val_acc": None, "lr": 1e-3,
                                      "samples_per_s": 1.0}]))
    refused = card("--metrics", str(other_run))
    assert refused.returncode == 2 and refused.stderr.strip() == f"error: {other_run}: not the metrics of the run that wrote this checkpoint"

    weights.with_suffix(".md").write_text("# a card written by hand, without figure blocks\n")
    refused = card()
    assert refused.returncode == 2 and "Traceback" not in refused.stderr
    assert refused.stderr.strip() == f"error: {weights.with_suffix('.md')}: no '<!-- masnn card: model -->' block to rewrite"


def test_card_scores_real_recordings_named_by_their_class(trained, tmp_path):
    weights = tmp_path / "tiny-tcsa.pt"
    shutil.copy(trained / "run" / "last.pt", weights)
    write_report(evaluate(weights, gesture_samples(trained / "data", "test"), n_crops=2), tmp_path / "tiny-tcsa.json")
    clips = [tmp_path / "class01_hand_clap.aedat4", tmp_path / "class09_air_drums.aedat4", tmp_path / "unlabelled.aedat4"]
    for clip, action in zip(clips, ("hand clap", "air drums", "air guitar")):
        write_action_clip(clip, action, seed=3, duration=1.0)
    classified = subprocess.run([sys.executable, "-m", "masnn", "classify", *map(str, clips), "--weights", str(weights),
                                 "--json", "--top-k", "11"], capture_output=True, text=True, timeout=300)
    assert classified.returncode == 0, classified.stderr
    (tmp_path / "real.jsonl").write_text(classified.stdout)
    lines = [json.loads(line) for line in classified.stdout.splitlines()]
    classes = lines[0]["model"]["classes"]  # the tiny run has no class names: "class 0" ... "class 10"
    truths = (classes[0], classes[8])  # class01 and class09 in the dataset's 1-based numbering
    right = sum(line["prediction"]["class"] == truth for line, truth in zip(lines, truths))

    card = subprocess.run([sys.executable, "-m", "masnn", "card", str(weights), "--report", str(tmp_path / "tiny-tcsa.json"),
                           "--real", str(tmp_path / "real.jsonl")], capture_output=True, text=True, timeout=300)
    assert card.returncode == 0, card.stderr
    text = weights.with_suffix(".md").read_text()
    assert f"Named correctly: {right} of 2 labelled recordings" in text
    assert f"| `class09_air_drums.aedat4` | {truths[1]} | " in text and "| `unlabelled.aedat4` | - | " in text

    other = [{**line, "model": {**line["model"], "sha256": "0" * 64}} for line in lines]
    (tmp_path / "other.jsonl").write_text("\n".join(map(json.dumps, other)))
    refused = subprocess.run([sys.executable, "-m", "masnn", "card", str(weights), "--report", str(tmp_path / "tiny-tcsa.json"),
                              "--real", str(tmp_path / "other.jsonl")], capture_output=True, text=True, timeout=300)
    assert refused.returncode == 2 and "Traceback" not in refused.stderr
    assert refused.stderr.strip().startswith(f"error: {tmp_path / 'other.jsonl'}: made by other weights")
