"""Training loop: learning, exact resume, two-process (gloo) == one process, config precedence, checkpoints."""
import json
import os
import random
import socket
import subprocess
import sys
import warnings
from dataclasses import replace

import numpy as np
import pytest
import torch
import torch.multiprocessing as mp

from masnn.checkpoint import build_model, load_checkpoint
from masnn.datasets.io import writers
from masnn.training.config import TrainConfig, load_config
from masnn.training.loop import PAPER_BEST_TEST, accuracy, class_targets, train

TINY = {"model": "ma-snn-3layer", "attention": "none", "T": 4, "num_classes": 3, "model_kwargs": {"input_size": 8},
        "framing": {"size": 8}, "batch_size": 8, "lr": 1e-3, "epochs": 2, "seed": 0}  # frames as large as the input


class Blobs(torch.utils.data.Dataset):
    """Class c = a bright 3 x 3 blob in corner c of an 8 x 8 frame (ON channel), over Poisson-ish noise."""

    def __init__(self, n: int, seed: int = 0, classes: int = 3, steps: int = 4):
        g = torch.Generator().manual_seed(seed)
        self.labels = torch.arange(n) % classes
        self.frames = (torch.rand(n, steps, 2, 8, 8, generator=g) < 0.1).float()  # (N, T, 2, H, W)
        corners = [(0, 0), (0, 5), (5, 0), (5, 5)]
        for i, c in enumerate(self.labels.tolist()):
            y, x = corners[c]
            self.frames[i, :, 0, y:y + 3, x:x + 3] += 2.0
        self.epochs_seen = []

    def set_epoch(self, epoch: int) -> None:
        self.epochs_seen.append(epoch)

    def __len__(self):
        return len(self.labels)

    def __getitem__(self, i):
        return self.frames[i], int(self.labels[i])


class Interrupted(Exception):
    pass


class Interrupting(Blobs):
    """Raises after ``after`` items: a run killed in the middle of an epoch."""

    def __init__(self, n: int, after: int):
        super().__init__(n)
        self.left = after

    def __getitem__(self, i):
        self.left -= 1
        if self.left < 0:
            raise Interrupted
        return super().__getitem__(i)


def config(tmp_path, name: str, **kw) -> TrainConfig:
    return TrainConfig(**{**TINY, "out_dir": str(tmp_path / name), **kw})


def weights(path) -> dict:
    return load_checkpoint(path)["model"]


def assert_same(a: dict, b: dict, atol: float = 0.0) -> None:
    assert a.keys() == b.keys()
    for k in a:
        assert torch.allclose(a[k].double(), b[k].double(), rtol=0, atol=atol), k


def test_learns_tiny_set_well_above_chance(tmp_path):
    cfg = config(tmp_path, "learn", epochs=6, scheduler="cosine")
    data = Blobs(48)
    result = train(cfg, data, val_set=Blobs(24, seed=1), progress=True)  # the rich bars run too
    assert result["val_acc"] >= 0.8, result["history"]  # chance: 1/3
    assert data.epochs_seen == list(range(6))
    rows = json.loads((tmp_path / "learn" / "metrics.json").read_text())
    assert [r["epoch"] for r in rows] == list(range(1, 7))
    assert set(rows[0]) == {"epoch", "train_loss", "train_acc", "val_acc", "lr", "output_rate", "samples_per_s", "test_acc"}
    assert rows[0]["test_acc"] is None  # the test set is not touched unless the paper's selection is asked for
    csv = (tmp_path / "learn" / "metrics.csv").read_text().splitlines()
    assert csv[0].startswith("epoch,train_loss") and len(csv) == 7
    best = load_checkpoint(tmp_path / "learn" / "best.pt")
    assert best["best"] == max(r["val_acc"] for r in rows) == result["best"]


def test_bf16_autocast_on_the_cpu_feeds_the_neurons_bf16_currents_and_still_learns(tmp_path, monkeypatch):
    from masnn.models.lif import layer

    seen = set()
    forward = layer.LIF.forward

    def recording(self, x):
        seen.add(x.dtype)
        return forward(self, x)

    monkeypatch.setattr(layer.LIF, "forward", recording)
    result = train(config(tmp_path, "amp", epochs=6, scheduler="cosine", amp=True), Blobs(48), val_set=Blobs(24, seed=1))
    assert torch.bfloat16 in seen  # the synapses ran under autocast (validation runs in float32)
    assert result["val_acc"] >= 0.8, result["history"]  # chance: 1/3; float32 reaches the same bar (above)


class BlobsAndNoGesture(Blobs):
    """Blobs, then ``n_none`` items of noise alone labelled -1 (no gesture)."""

    def __init__(self, n: int, n_none: int, seed: int = 0, steps: int = 4):
        super().__init__(n + n_none, seed, steps=steps)
        self.labels[n:] = -1
        self.frames[n:] = (torch.rand(n_none, steps, 2, 8, 8, generator=torch.Generator().manual_seed(seed + 50)) < 0.1).float()


def _top_probability_on_noise(checkpoint, steps: int) -> float:
    """The mean top class probability (rates / their sum, as masnn classify's) over windows of noise alone."""
    model = build_model(load_checkpoint(checkpoint)).eval()
    with torch.no_grad():
        rates = model(BlobsAndNoGesture(0, 24, seed=2, steps=steps).frames.transpose(0, 1))  # (B, classes)
    return torch.where(rates.sum(1) > 0, rates.max(1).values / rates.sum(1).clamp_min(1e-12), torch.tensor(1 / 3)).mean().item()


def test_no_gesture_items_train_towards_every_class_equally_likely(tmp_path):
    expected = torch.tensor([[0, 0, 1], [1 / 3, 1 / 3, 1 / 3]])
    assert torch.allclose(class_targets(torch.tensor([2, -1]), 3, torch.float32), expected)
    steps = 12  # enough time steps for spike counts near 1/3 each
    data = BlobsAndNoGesture(48, 24, steps=steps)
    assert data.frames[48:].max() == 1  # no blob (2 or more) in the no-gesture items
    top, history = {}, {}
    for name, train_set in (("with", data), ("without", Blobs(48, steps=steps))):
        result = train(config(tmp_path, name, epochs=8, scheduler="cosine", T=steps), train_set, val_set=Blobs(24, seed=1, steps=steps))
        assert result["val_acc"] >= 0.8, result["history"]
        top[name], history[name] = _top_probability_on_noise(tmp_path / name / "best.pt", steps), result["history"]
    assert top["with"] < 0.8 and top["without"] > 0.9, top  # measured: 0.70 and 1.0 (noise named confidently)
    # the training accuracy counts the 48 items with a gesture only: counting all 72 it could not pass 48 / 72
    assert history["with"][-1]["train_acc"] > 0.75, history["with"]


def test_paper_selection_is_the_best_test_epoch_and_kept_apart(tmp_path):
    cfg = config(tmp_path, "paper", epochs=3)
    test = Blobs(12, seed=7)
    result = train(cfg, Blobs(24), val_set=Blobs(12, seed=1), progress=False, paper_test_set=test)
    rows = result["history"]
    best_epoch = max(rows, key=lambda r: r["test_acc"])  # the first of equal bests
    assert result[PAPER_BEST_TEST] == best_epoch["test_acc"]
    assert result["best"] == max(r["val_acc"] for r in rows)  # the honest selection is untouched
    kept = load_checkpoint(tmp_path / "paper" / "best_test.pt")
    assert kept["data"]["epoch"] == best_epoch["epoch"]
    assert accuracy(build_model(kept), test, 12, torch.device("cpu")) == best_epoch["test_acc"]


@pytest.mark.parametrize("ema", [0.0, 0.9])
def test_resume_after_interrupted_epoch_equals_uninterrupted_run(tmp_path, ema):
    torch.use_deterministic_algorithms(True)
    try:
        cfg = config(tmp_path, "full", epochs=3, ema=ema)  # plateau scheduler: its state must survive the restart too
        train(cfg, Blobs(24), progress=False)
        cut = replace(cfg, out_dir=str(tmp_path / "cut"))
        with pytest.raises(Interrupted):
            # dies half way through epoch 2 (an average's BatchNorm pass reads the 24 crops once more an epoch)
            train(cut, Interrupting(24, after=(48 if ema else 24) + 12), progress=False)
        assert load_checkpoint(tmp_path / "cut" / "last.pt")["data"]["epoch"] == 1
        result = train(cut, Blobs(24), progress=False, resume=True)
    finally:
        torch.use_deterministic_algorithms(False)
    assert [r["epoch"] for r in result["history"]] == [1, 2, 3]
    full, resumed = load_checkpoint(tmp_path / "full" / "last.pt"), load_checkpoint(tmp_path / "cut" / "last.pt")
    assert_same(full["model"], resumed["model"])  # with an average: the average, and the trained weights below
    assert_same(full.get("trained", {}), resumed.get("trained", {}))
    assert full.get("averaged_steps") == resumed.get("averaged_steps") == (9 if ema else None)
    assert full["history"][-1]["train_loss"] == resumed["history"][-1]["train_loss"]
    assert_same(weights(tmp_path / "full" / "best.pt"), weights(tmp_path / "cut" / "best.pt"))


def test_the_weight_average_is_the_moving_average_of_the_trained_steps(tmp_path):
    """One step an epoch (8 samples, batch 8, constant rate): the plain runs of 1, 2 and 3 epochs give the trained
    weights after each step, and the average is worked out from them by hand; its BatchNorm statistics are those
    of its own weights on the training crops."""
    def trained_for(epochs: int) -> dict:
        train(config(tmp_path, f"plain{epochs}", epochs=epochs, scheduler="none", batch_size=8), Blobs(8), progress=False)
        return weights(tmp_path / f"plain{epochs}" / "last.pt")

    steps = [trained_for(epochs) for epochs in (1, 2, 3)]
    decay = 0.75
    averaged = train(config(tmp_path, "ema", epochs=3, scheduler="none", batch_size=8, ema=decay), Blobs(8),
                     val_set=Blobs(6, seed=1), progress=False)
    ckpt = load_checkpoint(tmp_path / "ema" / "last.pt")
    assert_same(ckpt["trained"], steps[2])  # averaging never touches the training
    assert ckpt["averaged_steps"] == 3
    model = build_model(ckpt)  # the average, as a checkpoint rebuilds it
    for key, value in model.named_parameters():
        by_hand = (steps[0][key] * decay + steps[1][key] * (1 - decay)) * decay + steps[2][key] * (1 - decay)
        assert torch.allclose(value, by_hand, rtol=1e-5, atol=1e-6), key
    norms = {name: m for name, m in model.named_modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)}
    held = {name: (m.running_mean.clone(), m.running_var.clone()) for name, m in norms.items()}
    for m in norms.values():  # the statistics of one pass over the 8 training crops, measured here by hand
        m.reset_running_stats()
        m.momentum = None
    with torch.no_grad():
        model.train()(Blobs(8).frames.transpose(0, 1))
    for name, m in norms.items():
        mean, var = held[name]
        assert torch.allclose(m.running_mean, mean, atol=1e-5) and torch.allclose(m.running_var, var, rtol=1e-4, atol=1e-5)
        assert not torch.allclose(m.running_mean, steps[2][f"{name}.running_mean"])
    model.eval()
    assert averaged["val_acc"] == accuracy(model, Blobs(6, seed=1), 8, torch.device("cpu"))  # validation scored the average
    with pytest.raises(ValueError, match="ema is a decay per step in"):
        config(tmp_path, "bad", ema=1.0)


def _held(path) -> int:
    return load_checkpoint(path)["data"]["epoch"]


@pytest.mark.parametrize("damage", ["missing", "older"])
def test_resume_restores_best_pt_lost_between_the_two_writes(tmp_path, damage):
    """A kill after last.pt and before best.pt (the order runs used to write them in) lost the best epoch's
    checkpoint for good; a resume now rebuilds it, even when no epoch is left to train."""
    cfg = config(tmp_path, "run")  # 2 epochs, chosen by the lowest training loss
    train(cfg, Blobs(24), progress=False)
    history = load_checkpoint(tmp_path / "run" / "last.pt")["history"]
    assert history[1]["train_loss"] < history[0]["train_loss"]  # epoch 2 is the best: best.pt holds it
    uninterrupted = weights(tmp_path / "run" / "best.pt")
    best = tmp_path / "run" / "best.pt"
    if damage == "missing":
        best.unlink()
    else:  # the best.pt of epoch 1, from a run interrupted in epoch 2
        with pytest.raises(Interrupted):
            train(replace(cfg, out_dir=str(tmp_path / "older")), Interrupting(24, after=24 + 12), progress=False)
        assert _held(tmp_path / "older" / "best.pt") == 1
        best.write_bytes((tmp_path / "older" / "best.pt").read_bytes())
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # rebuilt without a word: nothing was lost
        train(cfg, Blobs(24), progress=False, resume=True)
    assert _held(best) == 2
    assert_same(weights(best), uninterrupted)
    assert [p.name for p in (tmp_path / "run").iterdir() if ".tmp" in p.name] == []


def test_resume_says_when_an_older_best_is_lost_for_good(tmp_path):
    cfg = config(tmp_path, "run")
    train(cfg, Blobs(24), progress=False)
    last = tmp_path / "run" / "last.pt"
    ckpt = torch.load(last, weights_only=True)
    ckpt["history"][0]["train_loss"] = 0.0  # make epoch 1 the best one
    ckpt["best"] = 0.0
    torch.save(ckpt, last)
    (tmp_path / "run" / "best.pt").unlink()
    with pytest.warns(UserWarning, match=r"best.pt: the checkpoint of epoch 1 .* lost by an interrupted run \(missing\)"):
        train(cfg, Blobs(24), progress=False, resume=True)
    assert not (tmp_path / "run" / "best.pt").exists()  # never a checkpoint of another epoch under its name


def test_resume_with_nothing_to_resume_starts_a_fresh_run(tmp_path):
    fresh = train(config(tmp_path, "fresh"), Blobs(16), progress=False)
    cfg = config(tmp_path, "killed-early")
    (tmp_path / "killed-early").mkdir()  # a run killed before its first epoch ended: no last.pt, maybe half of one
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    half = tmp_path / "killed-early" / f".last.masnn-{writers._HOST}-{dead.pid}-0.tmp.pt"
    half.write_bytes(b"half a checkpoint")
    with pytest.warns(UserWarning, match=r"killed-early/last.pt: nothing to resume, starting a fresh run"):
        resumed = train(cfg, Blobs(16), progress=False, resume=True)
    assert [r["epoch"] for r in resumed["history"]] == [1, 2]
    assert resumed["train_loss"] == fresh["train_loss"]
    assert_same(weights(tmp_path / "fresh" / "last.pt"), weights(tmp_path / "killed-early" / "last.pt"))
    assert not half.exists()  # the killed run's temporary went with the next run in its folder


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _rank(rank: int, world: int, port: int, cfg: TrainConfig) -> None:
    # what torchrun sets; train() then starts the gloo process group itself
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), WORLD_SIZE=str(world), RANK=str(rank),
                      LOCAL_RANK=str(rank))
    torch.set_num_threads(1)
    train(cfg, Blobs(32), val_set=Blobs(8, seed=1) if rank == 0 else None, progress=False)


def test_two_process_gloo_equals_one_process_on_the_global_batch(tmp_path):
    # Adam normalises each gradient element, so rounding differences (the sums run in another order over two ranks)
    # grow with lr and steps: the paper's lr and 2 epochs x 2 steps keep them ~2e-6, well inside 1e-5
    same = {"lr": 1e-4, "batch_size": 16}
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        single = config(tmp_path, "single", **same)
        train(single, Blobs(32), val_set=Blobs(8, seed=1), progress=False)
    finally:
        torch.set_num_threads(threads)
    ddp = config(tmp_path, "ddp", **same)
    mp.spawn(_rank, args=(2, _free_port(), ddp), nprocs=2, join=True)
    one, two = load_checkpoint(tmp_path / "single" / "last.pt"), load_checkpoint(tmp_path / "ddp" / "last.pt")
    assert_same(one["model"], two["model"], atol=1e-5)  # BN running stats included: statistics were global
    for a, b in zip(one["history"], two["history"]):
        assert a["train_loss"] == pytest.approx(b["train_loss"], abs=1e-6)


def test_config_precedence_and_unknown_keys(tmp_path):
    path = tmp_path / "run.toml"
    path.write_text('preset = "gesture-paper"\nepochs = 7\nlr = 0.01\n[framing]\ndt_us = 10000\n')
    cfg = load_config(path, {"lr": 0.5, "batch_size": None, "framing": {"size": 64}})
    assert (cfg.epochs, cfg.lr, cfg.batch_size, cfg.T) == (7, 0.5, 128, 60)  # file < overrides; None skipped
    assert cfg.framing == {"dt_us": 10_000, "size": 64}  # preset < file < overrides, merged key by key
    path.write_text('preset = "gesture-paper"\n[framing]\ndt_ms = 10.0\n')  # the older spelling, in milliseconds
    assert load_config(path).framing == {"dt_us": 10_000, "size": 32}
    path.write_text('[framing]\ndt_ms = 10.0\ndt_us = 10000\n')
    with pytest.raises(ValueError, match="both dt_us and its older spelling"):
        load_config(path)
    assert load_config(overrides={"epochs": 1}, preset="gesture-cpu-small").T == 20
    path.write_text("epoch = 3\n")
    with pytest.raises(ValueError, match=r"unknown config key\(s\) \['epoch'\].*valid keys"):
        load_config(path)
    with pytest.raises(ValueError, match="unknown config key"):
        load_config(overrides={"learning_rate": 1.0})
    with pytest.raises(ValueError, match="unknown preset"):
        load_config(preset="imagenet")
    with pytest.raises(ValueError, match="optimizer must be one of"):
        load_config(overrides={"optimizer": "sgd"})


def test_checkpoint_rebuilds_model_and_refuses_another_architecture(tmp_path):
    cfg = config(tmp_path, "ckpt", epochs=1)
    train(cfg, Blobs(16), progress=False)
    path = tmp_path / "ckpt" / "last.pt"
    torch.load(path, weights_only=True)  # plain tensors and containers only
    ckpt = load_checkpoint(path, expect={"name": "ma-snn-3layer", "num_classes": 3})
    model = build_model(ckpt).eval()
    assert model.model_args == {"name": "ma-snn-3layer", "attention": "none", "placement": "paper", "T": 4,
                                "num_classes": 3, "input_size": 8}
    assert ckpt["config"]["model_kwargs"] == {"input_size": 8}
    x = Blobs(2).frames.transpose(0, 1)  # (T, B, 2, 8, 8)
    assert model(x).shape == (2, 3)
    with pytest.raises(ValueError, match="another model: num_classes: checkpoint has 3, expected 11"):
        load_checkpoint(path, expect={"name": "ma-snn-3layer", "num_classes": 11})
    with pytest.raises(ValueError, match="name: checkpoint has 'ma-snn-3layer', expected 'ma-snn-5layer'"):
        load_checkpoint(path, expect={"name": "ma-snn-5layer"})
    with pytest.raises(ValueError, match="another model"):  # resuming with another architecture is refused too
        train(replace(cfg, num_classes=4, epochs=2), Blobs(16, classes=3), progress=False, resume=True)


def test_init_starts_from_the_given_weights_and_refuses_another_network(tmp_path):
    """A run whose learning rate is too small to move anything ends with the weights it was given, not with the
    seed's random ones; a resume takes last.pt's weights over them."""
    train(config(tmp_path, "given", epochs=2, seed=5), Blobs(16), progress=False)
    given = tmp_path / "given" / "last.pt"
    fresh = build_model(load_checkpoint(given))
    for p in fresh.parameters():
        p.data.uniform_(-1, 1)  # far from anything a seed draws
    torch.save({**load_checkpoint(given), "model": fresh.state_dict()}, tmp_path / "far.pt")
    tuned = config(tmp_path, "tuned", epochs=1, lr=1e-12, scheduler="none", init=str(tmp_path / "far.pt"))
    train(tuned, Blobs(16), progress=False)
    kept, first = weights(tmp_path / "tuned" / "last.pt"), "layers.0.synapse.op.weight"
    for name, value in fresh.named_parameters():
        assert torch.allclose(kept[name], value, atol=1e-6), name
    train(config(tmp_path, "random", epochs=1, lr=1e-12, scheduler="none"), Blobs(16), progress=False)
    assert not torch.allclose(weights(tmp_path / "random" / "last.pt")[first], kept[first], atol=1e-3)
    resumed = train(replace(tuned, epochs=2, init=str(given)), Blobs(16), progress=False, resume=True)
    assert [r["epoch"] for r in resumed["history"]] == [1, 2]
    assert torch.allclose(weights(tmp_path / "tuned" / "last.pt")[first], kept[first], atol=1e-6)  # last.pt's, not --init's
    with pytest.raises(ValueError, match="another model: num_classes: checkpoint has 3, expected 4"):
        train(config(tmp_path, "other", num_classes=4, init=str(given)), Blobs(16), progress=False)


def test_cli_trains_on_a_synthetic_gesture_set(tmp_path):
    """End to end: synthetic set in the real layout -> masnn train -> checkpoints and metrics."""
    import csv
    import subprocess
    import sys

    from masnn.datasets.synth.generator import GESTURE_PRESETS as SYNTH_PRESETS
    from masnn.datasets.synth.generator import write_gesture_dataset

    write_gesture_dataset(tmp_path / "data", users=3, seed=1, preset=SYNTH_PRESETS["tiny"], workers=1)
    out = tmp_path / "run"
    result = subprocess.run(
        [sys.executable, "-m", "masnn", "train", "--data", str(tmp_path / "data"), "--preset", "gesture-cpu-small",
         "--epochs", "1", "--batch-size", "4", "--scheduler", "none", "--loss", "ce", "--out", str(out), "--resume"],
        capture_output=True, text=True, timeout=600,
    )
    assert result.returncode == 0, result.stderr
    assert f"warning: {out / 'last.pt'}: nothing to resume, starting a fresh run" in result.stderr  # --resume, nothing yet
    with open(out / "metrics.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 1 and rows[0]["val_acc"] != ""  # validation carved from the training users
    from masnn.checkpoint import build_model, load_checkpoint

    checkpoint = load_checkpoint(out / "best.pt", expect={"num_classes": 11, "T": 20})
    assert (checkpoint["config"]["scheduler"], checkpoint["config"]["loss"]) == ("none", "ce")  # flags over the preset (cosine, mse)
    model = build_model(checkpoint)
    assert sum(p.numel() for p in model.parameters()) > 0
    refused = subprocess.run([sys.executable, "-m", "masnn", "train", "--data", str(tmp_path / "data"), "--scheduler", "weekly"],
                             capture_output=True, text=True, timeout=300)
    assert refused.returncode == 2 and refused.stderr.startswith("error: --scheduler: must be one of plateau, cosine, none") and "Traceback" not in refused.stderr


def test_training_leaves_the_global_rng_as_it_found_it(tmp_path):
    torch.manual_seed(123)
    random.seed(5)
    np.random.seed(7)
    states = torch.get_rng_state(), random.getstate(), np.random.get_state(legacy=True)
    train(config(tmp_path, "rng", epochs=1), Blobs(16), progress=False)
    torch_state, python_state, numpy_state = states
    assert torch.equal(torch.get_rng_state(), torch_state)
    assert random.getstate() == python_state
    assert all(np.array_equal(a, b) for a, b in zip(np.random.get_state(legacy=True), numpy_state))
    again = train(config(tmp_path, "rng-again", epochs=1), Blobs(16), progress=False)  # seeded by the config alone
    assert again["train_loss"] == load_checkpoint(tmp_path / "rng" / "last.pt")["history"][-1]["train_loss"]


def test_checkpoints_are_in_microseconds_and_old_millisecond_ones_load_the_same(tmp_path):
    train(config(tmp_path, "us", epochs=1, framing={"dt_us": 45_000, "size": 8}), Blobs(16), progress=False)
    path = tmp_path / "us" / "last.pt"
    assert torch.load(path, weights_only=True)["config"]["framing"] == {"dt_us": 45_000, "size": 8}
    old = torch.load(path, weights_only=True)
    old["config"]["framing"] = {"dt_ms": 45.0, "size": 8}  # as checkpoints written before the switch (the shipped ones)
    torch.save(old, tmp_path / "old.pt")
    loaded = load_checkpoint(tmp_path / "old.pt", expect={"framing": {"dt_us": 45_000, "size": 8}})
    assert loaded["config"]["framing"] == load_checkpoint(path)["config"]["framing"]
    assert load_checkpoint(path, expect={"framing": {"dt_ms": 45.0, "size": 8}})  # an expectation in the older spelling too
    from masnn.classify import shipped_weights

    shipped = shipped_weights()["gesture-tcsa"]  # the default: microseconds, and its input filter kept through loading
    assert load_checkpoint(shipped)["config"]["framing"] == {"dt_us": 45_000, "size": 32, "denoise_us": 10_000}


def _listed_gesture_layout(root):
    """The original DVS128 Gesture layout's file lists, enough for the sample list (no events read)."""
    names = [f"user{u:02d}_fluorescent.aedat" for u in range(1, 6)]
    for name in names:
        (root / name).touch()
        (root / name.replace(".aedat", "_labels.csv")).write_text("class,startTime_usec,endTime_usec\n1,0,100\n")
    (root / "trials_to_train.txt").write_text("\n".join(names) + "\n")
    (root / "trials_to_test.txt").write_text("")


@pytest.mark.parametrize("dataset, chosen, steps, batch", [("gesture", "gesture-cpu-small", 20, 16),
                                                             ("gait", "gait-cpu-small", 20, 16)])
def test_train_without_a_preset_picks_the_cpu_one_on_a_cpu_and_says_so(tmp_path, monkeypatch, capsys, dataset, chosen,
                                                                        steps, batch):
    import masnn.training.loop as loop
    from masnn.cli import main

    if dataset == "gesture":
        _listed_gesture_layout(tmp_path)
    else:
        for subject in ("01", "02"):
            for walk in range(5):
                (tmp_path / "train" / subject).mkdir(parents=True, exist_ok=True)
                (tmp_path / "train" / subject / f"walk{walk}.txt").write_text("1000 1 2 0\n1090 5 6 1\n")
    seen = {}
    monkeypatch.setattr(loop, "train", lambda cfg, *a, **k: seen.setdefault("cfg", cfg) and {"best": 0.0})
    with pytest.raises(SystemExit) as ended:
        main(["train", "--data", str(tmp_path), "--dataset", dataset, "--device", "cpu", "--out", str(tmp_path / "run")])
    out = capsys.readouterr()
    assert ended.value.code == 0, out.err
    paper = chosen.replace("cpu-small", "paper")
    assert f"preset: {chosen} (chosen for the CPU; --preset {paper} for the paper's protocol)" in out.out
    cfg = seen["cfg"]
    assert (cfg.T, cfg.batch_size, cfg.device) == (steps, batch, "cpu")  # not the paper's T = 60, batch 128


def test_the_gpu_gets_the_papers_preset_and_a_given_preset_or_config_is_kept(tmp_path, monkeypatch, capsys):
    import masnn.training.loop as loop
    from masnn.cli import main
    from masnn.training.config import device_preset, load_config

    preset, line = device_preset("gesture", "cuda")
    assert preset == "gesture-paper" and line.startswith("preset: gesture-paper (chosen for the GPU")
    assert (load_config(preset=preset).T, load_config(preset=preset).batch_size) == (60, 128)
    assert device_preset("gait", "cuda")[0] == "gait-paper" and device_preset("tonic-gesture", "cpu")[0] == "gesture-cpu-small"
    _listed_gesture_layout(tmp_path)
    (tmp_path / "c.toml").write_text("T = 12\n")
    seen = []
    monkeypatch.setattr(loop, "train", lambda cfg, *a, **k: seen.append(cfg) or {"best": 0.0})
    for extra in (["--preset", "gesture-paper"], ["--config", str(tmp_path / "c.toml")]):
        with pytest.raises(SystemExit) as ended:
            main(["train", "--data", str(tmp_path), "--device", "cpu", "--out", str(tmp_path / "run"), *extra])
        out = capsys.readouterr()
        assert ended.value.code == 0, out.err
        assert "preset:" not in out.out
    assert [cfg.T for cfg in seen] == [60, 12]


def test_help_shows_every_default():
    import subprocess
    import sys

    for command, shown in (("train", ["[default: auto]", "[default: gesture]"]),
                           ("evaluate", ["[default: auto]", "[default: 10]", "[default: test]"]),
                           ("ablate", ["[default: gesture-cpu-small]", "[default: runs/ablate]"])):
        result = subprocess.run([sys.executable, "-m", "masnn", command, "--help"], capture_output=True, text=True,
                                timeout=120, env={**__import__("os").environ, "COLUMNS": "200"})
        words = " ".join(result.stdout.replace("│", " ").split())
        assert all(s in words for s in shown), (command, words)
