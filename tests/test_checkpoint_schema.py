"""Checkpoints are checked against their schema before a model is built: each fault is one line naming the file
and the field, through `masnn classify --weights` (exit 2, no traceback) and through the Python API
(ValueError). Pickles that would run code are refused by weights_only and never run."""
from __future__ import annotations

import builtins
import copy
import os
import pickle
import subprocess
import sys

import pytest
import torch

from masnn.checkpoint import CheckpointError, load_checkpoint
from masnn.classify import Classifier
from masnn.cli import main


@pytest.fixture(scope="module")
def good(untrained_checkpoint) -> dict:
    return torch.load(untrained_checkpoint, weights_only=True)


def _set(table: str, **values):
    return lambda c: c[table].update(values)


def _framing(**values):
    return lambda c: c["config"].update(framing=values)


def _weights(edit):
    return lambda c: edit(c["model"])


FIRST = "layers.0.synapse.op.weight"
# case -> (edit of the loaded untrained checkpoint, the field the error names, words of the problem)
BAD_CHECKPOINTS = {
    "another num_classes than its head": (_set("model_args", num_classes=5), "model.layers.4.synapse.op.weight",
                                          "shape [11, 256], but model_args"),
    "class names for another num_classes": (lambda c: c["config"].update(class_names=["a", "b"]), "config.class_names",
                                            "2 names for model_args.num_classes = 11"),
    "class names that are not strings": (lambda c: c["config"].update(class_names=list(range(11))), "config.class_names",
                                         "list of strings"),
    "no model key": (lambda c: c.pop("model"), "model", "missing"),
    "model not a table": (lambda c: c.update(model=[1, 2]), "model", "must be a table of tensors"),
    "a weight missing": (_weights(lambda m: m.pop(FIRST)), f"model.{FIRST}", "missing"),
    "an unexpected weight": (_weights(lambda m: m.update({"extra.weight": torch.zeros(2)})), "model.extra.weight",
                             "unexpected"),
    "a weight that is not a tensor": (_weights(lambda m: m.update({FIRST: 3})), f"model.{FIRST}", "must be a tensor"),
    "NaN weights": (_weights(lambda m: m[FIRST].fill_(float("nan"))), f"model.{FIRST}", "NaN or infinite"),
    "an unknown model argument": (_set("model_args", foo=3), "model_args.foo", "takes no such argument"),
    "an unregistered model": (_set("model_args", name="resnet-50"), "model_args.name", "not a registered model"),
    "model_args missing T": (lambda c: c["model_args"].pop("T"), "model_args.T", "missing"),
    "T zero": (_set("model_args", T=0), "model_args.T", "whole number from 1"),
    "T a string": (_set("model_args", T="20"), "model_args.T", "whole number from 1"),
    "num_classes true": (_set("model_args", num_classes=True), "model_args.num_classes", "whole number"),
    "an unknown attention": (_set("model_args", attention="XYZ"), "model_args.attention", "combination of T, C, S"),
    "an unknown placement": (_set("model_args", placement="inside"), "model_args.placement", "must be one of paper"),
    "LIF decay out of range": (_set("model_args", lif={"decay": 5.0}), "model_args.lif", "decay must lie in [0, 1]"),
    "LIF with an unknown field": (_set("model_args", lif={"tau": 2.0}), "model_args.lif", "tau"),
    "pruning without input attention": (_set("model_args", prune_threshold=0.5), "model_args",
                                        "prune_threshold needs input_attention=True"),
    "model_args not a table": (lambda c: c.update(model_args="3layer"), "model_args", "must be a table"),
    "another version": (lambda c: c.update(version=7), "version", "is 7; this masnn reads version 1"),
    "no version": (lambda c: c.pop("version"), "version", "missing"),
    "config not a table": (lambda c: c.update(config=[1]), "config", "must be a table"),
    "dt_us zero": (_framing(dt_us=0, size=32), "config.framing.dt_us", "from 1 us to 10 s (got 0)"),
    "dt_ms negative": (_framing(dt_ms=-45.0, size=32), "config.framing.dt_ms", "(got -45.0 ms)"),
    "dt_ms NaN": (_framing(dt_ms=float("nan"), size=32), "config.framing.dt_ms", "(got nan)"),
    "dt_us a float": (_framing(dt_us=45_000.5, size=32), "config.framing.dt_us", "from 1 us to 10 s"),
    "dt_us absurd": (_framing(dt_us=10**12, size=32), "config.framing.dt_us", "from 1 us to 10 s"),
    "both spellings of dt": (_framing(dt_us=45_000, dt_ms=45.0), "config.framing.dt_ms", "both dt_us and"),
    "size negative": (_framing(dt_us=45_000, size=-1), "config.framing.size", "side from 1 to 4096"),
    "size other than the model's": (_framing(dt_us=45_000, size=64), "config.framing.size",
                                    "frames of 64x64, but the model takes 32x32"),
    "an unknown spatial mode": (_framing(dt_us=45_000, size=32, mode="zoom"), "config.framing.mode", "crop, stretch"),
    "denoise negative": (_framing(dt_us=45_000, size=32, denoise_us=-1), "config.framing.denoise_us", "(got -1)"),
    "an unknown framing key": (_framing(dt_us=45_000, fps=30), "config.framing.fps", "unknown key"),
    "an unknown loss": (lambda c: c["config"].update(loss="hinge"), "config.loss", "must be one of mse, ce"),
    "ce_scale zero": (lambda c: c["config"].update(ce_scale=0), "config.ce_scale", "positive number"),
    "history not a list": (lambda c: c.update(history={}), "history", "must be a list"),
}


def write_bad(good: dict, folder, case: str):
    edit, field, problem = BAD_CHECKPOINTS[case]
    checkpoint = copy.deepcopy(good)
    edit(checkpoint)
    path = folder / "bad.pt"
    torch.save(checkpoint, path)
    return path, field, problem


def classify_cli(capsys, weights) -> tuple[int, list[str], str]:
    """`masnn classify --weights WEIGHTS` (the shipped sample clip) in this process: exit code, stderr lines, stdout."""
    with pytest.raises(SystemExit) as ended:
        main(["classify", "--weights", str(weights), "--json"])
    out = capsys.readouterr()
    return ended.value.code, out.err.splitlines(), out.out


@pytest.mark.parametrize("case", BAD_CHECKPOINTS)
def test_each_fault_is_one_line_naming_the_file_and_the_field(good, tmp_path, capsys, case):
    path, field, problem = write_bad(good, tmp_path, case)
    code, lines, out = classify_cli(capsys, path)
    assert code == 2 and out == "", lines
    assert len(lines) == 1, lines
    assert lines[0].startswith(f"error: {path}: checkpoint field {field}: "), lines[0]
    assert problem in lines[0]
    with pytest.raises(CheckpointError) as error:
        load_checkpoint(path)
    assert (error.value.field, str(error.value)) == (field, lines[0].removeprefix("error: "))
    with pytest.raises(ValueError, match="checkpoint field"):
        Classifier.load(path, "cpu")


def test_the_shipped_and_the_untrained_checkpoints_pass(untrained_checkpoint):
    from masnn.classify import shipped_weights

    for path in [untrained_checkpoint, *shipped_weights().values()]:
        checkpoint = load_checkpoint(path)
        assert checkpoint["config"]["framing"]["dt_us"] > 0


def test_half_precision_weights_pass(good, tmp_path):
    from masnn.checkpoint import slim_checkpoint

    torch.save(slim_checkpoint(copy.deepcopy(good), half=True), tmp_path / "half.pt")
    assert load_checkpoint(tmp_path / "half.pt")["model"][FIRST].dtype == torch.float16


@pytest.mark.parametrize("content, problem", [
    (b"", "the file is empty"),
    (b"not a checkpoint at all", "not a readable masnn checkpoint"),
    (b"PK\x03\x04 a zip that ends here", "not a readable masnn checkpoint"),
])
def test_unreadable_files_are_one_line(tmp_path, capsys, content, problem):
    path = tmp_path / "weights.pt"
    path.write_bytes(content)
    code, lines, _ = classify_cli(capsys, path)
    assert code == 2 and len(lines) == 1 and lines[0].startswith(f"error: {path}: ") and problem in lines[0], lines


def test_plain_data_that_is_not_a_checkpoint_is_one_line(tmp_path, capsys):
    path = tmp_path / "list.pt"
    torch.save([1, 2, 3], path)
    code, lines, _ = classify_cli(capsys, path)
    assert (code, lines) == (2, [f"error: {path}: not a masnn checkpoint (it holds a list, not a table)"])


class _RunsCode:
    """Unpickling calls ``function(*args)``: what a malicious checkpoint does."""

    def __init__(self, function, *args):
        self.function, self.args = function, args

    def __reduce__(self):
        return self.function, self.args


def _malicious(marker) -> dict:
    """Name -> the object a malicious file holds; each would create ``marker`` if it ran."""
    return {
        "os.system": _RunsCode(os.system, f"touch {marker}"),
        "builtins.exec": _RunsCode(builtins.exec, f"open({str(marker)!r}, 'w').close()"),
        "builtins.eval": _RunsCode(builtins.eval, f"open({str(marker)!r}, 'w')"),
        "builtins.open": _RunsCode(builtins.open, str(marker), "w"),
        "subprocess.call": _RunsCode(subprocess.call, ["touch", str(marker)]),
    }


@pytest.mark.parametrize("name", ["os.system", "builtins.exec", "builtins.eval", "builtins.open", "subprocess.call"])
@pytest.mark.parametrize("writer", ["torch.save", "pickle.dump"])
def test_malicious_pickles_are_refused_and_never_run(good, tmp_path, capsys, name, writer):
    marker = tmp_path / "ran"
    payload = {**copy.deepcopy(good), "history": [_malicious(marker)[name]]}  # hidden in an ordinary checkpoint
    path = tmp_path / "evil.pt"
    if writer == "torch.save":
        torch.save(payload, path)
    else:
        with open(path, "wb") as f:
            pickle.dump(payload, f)
    code, lines, _ = classify_cli(capsys, path)
    assert code == 2 and len(lines) == 1 and lines[0].startswith(f"error: {path}: not a readable masnn checkpoint")
    assert "weights_only" not in lines[0]  # torch's advice to load it unchecked is not passed on
    with pytest.raises(ValueError, match="not a readable masnn checkpoint"):
        load_checkpoint(path)
    assert not marker.exists()


def test_a_bad_checkpoint_through_the_real_command(good, tmp_path):
    """The installed entry point, in its own process: one line, exit 2, no traceback."""
    path, field, _ = write_bad(good, tmp_path, "dt_ms negative")
    result = subprocess.run([sys.executable, "-m", "masnn", "classify", "--weights", str(path)],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.splitlines() == [f"error: {path}: checkpoint field {field}: must be a frame duration from "
                                          f"1 us to 10 s (got -45.0 ms)"]
