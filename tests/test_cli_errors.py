"""Bad input never crashes, hangs or lies: exit code 2 and one 'error:' line naming the file or the option,
never a traceback. Bad recordings (`masnn inspect`); a truncated recording is still read (exit 0) with one
'warning:' line, and one that kept nothing is one error line; options out of range, refused before any work;
errors that do not name the file get its name; internal errors are exit code 1. Checkpoints:
test_checkpoint_schema.py."""
from __future__ import annotations

import json
import subprocess
import sys

import aedat_test_writers as aw
import numpy as np
import pytest


def inspect(path, *options) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "masnn", "inspect", str(path), *options],
                          capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("case", aw.BAD_FILES)
def test_bad_input_exits_2_with_one_error_line(tmp_path, case):
    path, problem = aw.BAD_FILES[case](tmp_path)
    result = inspect(path)
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(f"error: {path}: ")
    assert problem in lines[0]
    assert result.stdout == ""


@pytest.mark.parametrize("cut_kind", ["mid-event", "inside the packet header"])
def test_truncated_aedat31_is_inspected_with_one_warning(tmp_path, cut_kind):
    path, _, _, t, _ = aw.truncated_aedat31(tmp_path, cut_kind)
    result = inspect(path, "--json")
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    assert result.stderr.splitlines() == [line for line in result.stderr.splitlines() if line.startswith("warning: ")]
    assert len(result.stderr.splitlines()) == 1
    assert str(path) in result.stderr and "ends inside an AEDAT 3.1 packet" in result.stderr
    summary = json.loads(result.stdout)
    assert (summary["events"], summary["first_t_us"], summary["last_t_us"]) == (len(t), t[0], t[-1])
    assert (summary["format"], summary["sensor"]) == ("AEDAT 3.1", [128, 128])


def test_truncated_aedat2_is_inspected_with_one_warning(tmp_path):
    k = np.arange(300)
    path = tmp_path / "cut.aedat"
    aw.write_aedat2(path, aw.dvs128_address(k % 128, k % 100, k % 2), 500 + 4 * k, cut=5)
    result = inspect(path, "--json")
    assert result.returncode == 0, result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("warning: ") and str(path) in lines[0]
    summary = json.loads(result.stdout)
    assert (summary["events"], summary["last_t_us"], summary["format"]) == (299, 500 + 4 * 298, "AEDAT 2.0")


def test_truncated_aedat4_is_inspected_with_one_warning(tmp_path):
    k = np.arange(2000)
    t = 1_700_000_000_000_000 + 100 * k
    full, cut = tmp_path / "full.aedat4", tmp_path / "cut.aedat4"
    events = {"t": t, "x": k % 320, "y": k % 240, "p": k % 2}
    # four packets, uncompressed: salvaged with or without liblz4
    aw.write_dv(full, events, "DVXplorer", (320, 240), breaks=(500, 1000, 1500), compression="NONE")
    data = full.read_bytes()
    cut.write_bytes(data[: len(data) * 3 // 5])
    result = inspect(cut, "--json")
    assert result.returncode == 0, result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"warning: {cut}: ") and "cut short" in lines[0], result.stderr
    summary = json.loads(result.stdout)
    assert summary["events"] in (500, 1000, 1500)
    assert (summary["first_t_us"], summary["last_t_us"]) == (t[0], t[summary["events"] - 1])
    assert (summary["format"], summary["sensor"], summary["camera"]) == ("AEDAT 4.0", [320, 240], "DVXplorer")


# ---------------------------------------------------------------------------------------------------------------
# options: refused by the command line, before any work (the files named here do not exist: had the command
# started, it would have said so), in one line naming the option

def run_main(capsys, *args) -> tuple[int, list[str], str]:
    """`masnn ARGS` in this process: exit code, stderr lines, stdout."""
    from masnn.cli import main

    with pytest.raises(SystemExit) as ended:
        main([str(a) for a in args])
    out = capsys.readouterr()
    return ended.value.code, out.err.splitlines(), out.out


BAD_OPTIONS = [
    (["classify", "missing.aedat4", "--window", "0"], "--window", "greater than or equal to 0.001 (got 0"),
    (["classify", "missing.aedat4", "--window", "nan"], "--window", "greater than or equal to 0.001"),
    (["classify", "missing.aedat4", "--window", "inf"], "--window", "must be a finite number (got inf)"),
    (["classify", "missing.aedat4", "--stride", "-1"], "--stride", "greater than or equal to 0.001"),
    (["classify", "missing.aedat4", "--top-k", "0"], "--top-k", "greater than or equal to 1 (got 0)"),
    (["classify", "missing.aedat4", "--top-k", "x"], "--top-k", "valid integer"),
    (["classify", "missing.aedat4", "--min-events", "-1"], "--min-events", "greater than or equal to 0"),
    (["classify", "missing.aedat4", "--device", "tpu"], "--device", "must be auto, cpu, cuda or cuda:N (got 'tpu')"),
    (["classify", "missing.aedat4", "--device", "cuda:99"], "--device", "cuda:99: "),
    (["classify", "missing.aedat4", "--mode", "sideways"], "--mode", "must be one of auto, clip, timeline"),
    (["classify", "missing.aedat4", "--render", "out.avi"], "--render", "must end in .mp4 or .gif"),
    (["frames", "missing.aedat4", "-o", "f.npy", "--denoise", "-5"], "--denoise", "greater than or equal to 0 (got -5"),
    (["frames", "missing.aedat4", "-o", "f.npy", "--dt", "0"], "--dt", "greater than or equal to 0.001"),
    (["frames", "missing.aedat4", "-o", "f.npy", "-T", "-1"], "--frames", "greater than or equal to 0"),
    (["frames", "missing.aedat4", "-o", "f.npy", "--size", "5000"], "--size", "less than or equal to 4096"),
    (["frames", "missing.aedat4", "-o", "f.npy", "--mode", "zoom"], "--mode", "must be one of crop, stretch"),
    (["frames", "missing.aedat4", "-o", "f.txt"], "--out", "must end in .npy"),
    (["inspect", "missing.aedat4", "--start", "-1"], "--start", "greater than or equal to 0"),
    (["inspect", "missing.aedat4", "--end", "inf"], "--end", "must be a finite number"),
    (["models", "--classes", "0"], "--classes", "greater than or equal to 1"),
    (["models", "--attention", "XY"], "--attention", "must be one of none, T, C, S, TC, TS, CS, TCS, TA, CA"),
    (["models", "--placement", "conv_pre"], "--placement", "must be one of paper, conv-pre, conv-post, activate-pre, "
                                                           "reference-code (got 'conv_pre')"),
    (["models", "--preset", "fp64"], "--preset", "must be one of fp32-45nm, fp16-45nm, int8-45nm (got 'fp64')"),
    (["models", "--name", "resnet"], "--name", "must be one of ma-snn-3layer"),
    (["live", "--replay", "missing.aedat4", "--speed", "-1"], "--speed", "greater than or equal to 0"),
    (["live", "--replay", "missing.aedat4", "--top-k", "0"], "--top-k", "greater than or equal to 1"),
    (["live", "--replay", "missing.aedat4", "--device", "gpu"], "--device", "must be auto, cpu, cuda or cuda:N"),
    (["train", "--data", "missing", "--epochs", "0"], "--epochs", "greater than or equal to 1"),
    (["train", "--data", "missing", "--batch-size", "0"], "--batch-size", "greater than or equal to 1"),
    (["train", "--data", "missing", "--lr", "0"], "--lr", "must be a finite number above 0"),
    (["train", "--data", "missing", "--lr", "nan"], "--lr", "must be a finite number above 0"),
    (["train", "--data", "missing", "--seed", "-1"], "--seed", "greater than or equal to 0"),
    (["train", "--data", "missing", "--attention", "Q"], "--attention", "must be one of none, T, C, S"),
    (["train", "--data", "missing", "--loss", "l1"], "--loss", "must be one of mse, ce (got 'l1')"),
    (["train", "--data", "missing", "--scheduler", "step"], "--scheduler", "must be one of plateau, cosine, none"),
    (["train", "--data", "missing", "--preset", "paper"], "--preset", "must be one of gesture-paper, gait-paper"),
    (["train", "--data", "missing", "--dataset", "nmnist"], "--dataset", "must be one of gesture, tonic-gesture, gait"),
    (["evaluate", "missing.pt", "--data", "missing", "--crops", "0"], "--crops", "greater than or equal to 1"),
    (["evaluate", "missing.pt", "--data", "missing", "--split", "val"], "--split", "must be one of train, test"),
    (["ablate", "--data", "missing", "--seeds", "0,a"], "--seeds", "comma-separated whole numbers"),
    (["ablate", "--data", "missing", "--attentions", "T,Q"], "--attentions", "each one of none, T, C, S"),
    (["calibrate", "w.pt", "--data", "missing", "--split", "train"], "--split", "must be one of validation, test"),
    (["classify", "missing.aedat4", "--format", "cvs"], "--format", "must be one of table, csv, jsonl (got 'cvs')"),
    (["synth", "gesture", "-o", "out", "--preset", "huge"], "--preset", "must be one of full, small, tiny (got 'huge')"),
    (["bench", "model", "--part", "gpu"], "--part", "must be one of all, lif, inference, window"),
    (["synth", "gesture", "-o", "out", "--users", "0"], "--users", "greater than or equal to 1"),
    (["synth", "gesture", "-o", "out", "--workers", "0"], "--workers", "greater than or equal to 1"),
    (["synth", "gesture", "-o", "out", "--sits", "1.5"], "--sits", "less than or equal to 1"),
    (["synth", "gait", "-o", "out", "--duration", "0"], "--duration", "greater than or equal to 0.1"),
    (["synth", "recording", "--action", "air guitar", "-o", "a.aedat4", "--sensor", "kinect"], "--sensor", "dvs128"),
    (["synth", "recording", "--action", "air guitar", "-o", "a.aedat4", "--lighting", "disco"], "--lighting", "lab"),
    (["bench", "model", "--steps", "0"], "--steps", "greater than or equal to 1"),
    (["bench", "model", "--surrogate", "relu"], "--surrogate", "must be one of rectangular"),
    (["bench", "live", "--rate", "0"], "--rate", "must be a finite number above 0"),
    (["bench", "live", "--seconds", "inf"], "--seconds", "must be a finite number above 0"),
    (["bench", "ingest", "--events", "0"], "--events", "greater than or equal to 1"),
]


@pytest.mark.parametrize("args, option, problem", BAD_OPTIONS, ids=[" ".join(a[0][:1] + a[0][-2:]) for a in BAD_OPTIONS])
def test_bad_options_are_one_line_before_any_work(capsys, args, option, problem):
    code, lines, out = run_main(capsys, *args)
    assert (code, out) == (2, ""), lines
    assert len(lines) == 1 and lines[0].startswith(f"error: {option}: ") and problem in lines[0], lines


@pytest.mark.parametrize("args, line", [
    (["nope"], "error: no such command 'nope'"),
    (["inspect"], "error: missing argument 'path'"),
    (["frames", "missing.aedat4"], "error: missing option '--out' / '-o'"),
    (["classify", "--nope"], "error: no such option: --nope"),
])
def test_usage_errors_are_one_line(capsys, args, line):
    code, lines, _ = run_main(capsys, *args)
    assert code == 2 and len(lines) == 1 and lines[0].startswith(line), lines


def test_help_shows_the_ranges_and_no_arguments_show_the_help(capsys):
    code, _, out = run_main(capsys, "classify", "--help")
    assert code == 0 and "x>=0.001" in out and "x>=1" in out and "cuda:N" in out
    code, lines, out = run_main(capsys, "frames", "--help")
    assert code == 0 and "0<=x<=4096" in out
    code, lines, out = run_main(capsys)  # `masnn` alone: the help, as a usage error (exit 2), as before
    assert code == 2 and "classify" in out and "Usage" in out


def test_the_real_command_refuses_an_option_in_one_line():
    result = subprocess.run([sys.executable, "-m", "masnn", "classify", "--window", "0.0001"],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.splitlines() == ["error: --window: input should be greater than or equal to 0.001 (got 0.0001)"]


# ---------------------------------------------------------------------------------------------------------------
# errors that do not name the file get its name; warnings come first, the error last; bugs are exit code 1

@pytest.fixture
def clip(tmp_path):
    from masnn.datasets.synth.generator import write_action_clip

    path = tmp_path / "clip.aedat4"
    write_action_clip(path, "air guitar", "dvs128", 0, 0.5, "lab")
    return path


@pytest.mark.parametrize("raised, line", [
    (ValueError("cannot convert float NaN to integer"), "cannot convert float NaN to integer"),
    (OverflowError("Python int too large to convert to C long"), "Python int too large to convert to C long"),
    (MemoryError(), "out of memory"),
    (MemoryError("cannot allocate 80 GiB"), "out of memory (cannot allocate 80 GiB)"),
    (ValueError("first line\nsecond line"), "first line"),
])
def test_an_error_that_does_not_name_the_file_is_given_its_name(capsys, monkeypatch, clip, raised, line):
    import masnn.datasets.stats as stats

    def fail(*args):
        raise raised

    monkeypatch.setattr(stats, "summarize", fail)
    code, lines, _ = run_main(capsys, "inspect", clip)
    assert (code, lines) == (2, [f"error: {clip}: {line}"])


def test_an_internal_error_is_one_line_with_exit_code_1_and_a_traceback_on_request(capsys, monkeypatch, clip):
    import masnn.datasets.stats as stats

    def bug(*args):
        raise TypeError("unsupported operand type(s) for +: 'int' and 'str'")

    monkeypatch.setattr(stats, "summarize", bug)
    code, lines, _ = run_main(capsys, "inspect", clip)
    assert code == 1
    assert lines == [f"error: {clip}: internal error (TypeError: unsupported operand type(s) for +: 'int' and 'str'); "
                     "please report it"]
    monkeypatch.setenv("MASNN_DEBUG", "1")
    with pytest.raises(TypeError):
        from masnn.cli import main

        main(["inspect", str(clip)])


@pytest.mark.parametrize("text, problem", [("epochs = = 3\n", "line 1"),
                                           ("[framing]\ndt_ms = -45\n", "framing.dt_ms: must be a frame duration")])
def test_a_config_that_does_not_parse_or_has_a_bad_framing_is_named(capsys, tmp_path, text, problem):
    config = tmp_path / "run.toml"
    config.write_text(text)
    code, lines, _ = run_main(capsys, "train", "--data", tmp_path, "--config", config)
    assert code == 2 and len(lines) == 1 and lines[0].startswith(f"error: {config}: ") and problem in lines[0], lines


def test_init_weights_of_another_network_are_refused_before_any_data_is_read(capsys, tmp_path):
    code, lines, _ = run_main(capsys, "train", "--data", tmp_path / "missing", "--init", "gait-tcsa")
    assert code == 2 and len(lines) == 1, lines
    assert lines[0].startswith("error: ") and "gait-tcsa.pt is for another model: num_classes: checkpoint has 20, " \
        "expected 11" in lines[0], lines
    code, lines, _ = run_main(capsys, "train", "--data", tmp_path, "--init", tmp_path / "none.pt")
    assert code == 2 and lines == [f"error: {tmp_path / 'none.pt'}: neither a checkpoint file nor a shipped model "
                                   "(shipped models: gait-tcsa, gait-vanilla, gesture-tcsa, gesture-vanilla; see masnn "
                                   "models --shipped)"], lines


@pytest.mark.parametrize("command", [["frames", "-o", "frames.npy"], ["inspect"], ["synth", "stats"]])
def test_a_damaged_recording_that_kept_nothing_is_one_error_line(tmp_path, command):
    k = np.arange(50)
    packets = aw.polarity_packets(k % 128, k % 100, 1000 + 10 * k, k % 2, sizes=(50,))
    path = tmp_path / "cut.aedat"
    aw.write_aedat31(path, packets, cut=len(packets[0]) - 4)  # the only packet is cut: no event kept
    args = [*command[:2], str(path), *command[2:]] if command[0] == "synth" else [command[0], str(path), *command[1:]]
    result = subprocess.run([sys.executable, "-m", "masnn", *args], capture_output=True, text=True, timeout=120,
                            cwd=tmp_path)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.splitlines() == [f"error: {path}: no events before the damage: ends inside an AEDAT 3.1 "
                                          "packet (4 bytes left over)"]


def test_a_selection_beyond_the_damage_is_one_line_naming_both(tmp_path):
    path, *_ = aw.truncated_aedat31(tmp_path, "mid-event")
    result = subprocess.run([sys.executable, "-m", "masnn", "frames", str(path), "-o", "f.npy", "--start", "100"],
                            capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    (error,) = result.stderr.splitlines()
    assert error.startswith(f"error: {path}: no events between")
    assert "where the recording is damaged: ends inside an AEDAT 3.1 packet" in error


def test_frames_that_would_not_fit_are_refused_before_framing(capsys, clip):
    code, lines, _ = run_main(capsys, "frames", clip, "-o", clip.with_suffix(".npy"), "--dt", "0.001", "-T", "0", "--size", "0")
    assert code == 2 and len(lines) == 1 and lines[0].startswith(f"error: {clip}: ") and "GiB" in lines[0], lines
    assert not clip.with_suffix(".npy").exists()
