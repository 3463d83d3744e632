"""`masnn classify`: windows against a hand-made histogram, segments on made-up windows, the JSON report
against its schema and against a recount of its own windows, every sensor, real recordings, bad input."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import jsonschema
import numpy as np
import pytest
import torch

from masnn.classify import Classifier, ClassifyOptions, classify_recording, iter_windows, segments, smooth
from masnn.datasets.io.readers import open_recording, read_events
from masnn.datasets.synth.generator import write_action_clip
from masnn.datasets.transforms.pipeline import FramingConfig


def schema() -> dict:
    from importlib import resources

    return json.loads(resources.files("masnn").joinpath("classify_schema.json").read_text())


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("clips") / "guitar.aedat4"
    write_action_clip(path, "air guitar", "dvs128", 5, 2.0, "lab")
    return path


def masnn(*args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "masnn", *map(str, args)], capture_output=True, text=True, timeout=300)


def test_windows_equal_a_hand_made_histogram(clip):
    framing = FramingConfig(dt_us=50_000, n_frames=8, size=32)
    events, _ = read_events(clip)
    origin = int(events["t"][0])
    with open_recording(clip) as recording:
        windows = list(iter_windows(recording, framing, stride_us=150_000))  # 3 bins
    assert [w.start_us for w in windows] == [k * 150_000 for k in range(len(windows))]
    total_bins = (int(events["t"][-1]) - origin) // 50_000 + 1
    assert len(windows) == (total_bins - 8) // 3 + 1
    for window in windows[:: max(1, len(windows) // 4)]:
        expected = np.zeros((8, 2, 32, 32), np.int64)
        k = (events["t"].astype(np.int64) - origin - window.start_us) // 50_000
        inside = (k >= 0) & (k < 8)
        e = events[inside]
        np.add.at(expected, (k[inside], e["p"].astype(int), e["y"] // 4, e["x"] // 4), 1)
        np.testing.assert_array_equal(window.frames, expected)


def test_a_recording_shorter_than_a_window_is_padded(clip):
    framing = FramingConfig(dt_us=100_000, n_frames=40, size=32)  # 4 s > the 2 s clip
    with open_recording(clip) as recording:
        windows = list(iter_windows(recording, framing, 100_000))
    assert len(windows) == 1 and windows[0].padded
    assert windows[0].frames[:20].sum() == len(read_events(clip)[0])
    assert windows[0].frames[21:].sum() == 0


def _windows(labels, classes=3, idle=()):
    out = []
    for i, label in enumerate(labels):
        p = np.full(classes, 0.05)
        p[label] = 1 - 0.05 * (classes - 1)
        out.append({"probabilities": p.tolist(), "idle": i in idle, "start_s": 0.5 * i, "end_s": 0.5 * i + 1.0})
    return out


def test_segments_merge_runs_and_absorb_flickers():
    names = ["a", "b", "c"]
    windows = _windows([0, 0, 0, 0, 1, 0, 0, 0, 2, 2, 2, 2, 2])
    got = segments(windows, names, smoothing=1, min_windows=2)
    assert [(s["class"], s["windows"]) for s in got] == [("a", 8), ("c", 5)]
    assert got[0]["start_s"] == 0.0 and got[0]["end_s"] == got[1]["start_s"] == 4.25  # halfway between the centres 4.0 and 4.5
    assert got[1]["end_s"] == windows[-1]["end_s"]
    assert got[1]["confidence"] == pytest.approx(0.9)


def test_idle_windows_make_idle_segments():
    got = segments(_windows([0, 0, 0, 1, 1, 1, 1], idle=(3, 4, 5, 6)), ["a", "b", "c"], smoothing=1)
    assert [(s["class"], s["index"], s["confidence"]) for s in got] == [("a", 0, pytest.approx(0.9)), ("idle", None, None)]


def test_smoothing_is_a_centred_mean():
    p = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0], [1.0, 0.0]])
    np.testing.assert_allclose(smooth(p, 3), [[0.5, 0.5], [2 / 3, 1 / 3], [2 / 3, 1 / 3], [1.0, 0.0]])


def test_probabilities_follow_the_training_loss(untrained_checkpoint):
    classifier = Classifier.load(untrained_checkpoint)
    rates = torch.tensor([[0.2, 0.6, 0.2], [0.0, 0.0, 0.0]])
    np.testing.assert_allclose(classifier.probabilities(rates), [[0.2, 0.6, 0.2], [1 / 3, 1 / 3, 1 / 3]], rtol=1e-6)
    classifier.loss = "ce"
    np.testing.assert_allclose(classifier.probabilities(rates[:1]), torch.softmax(rates[:1] * classifier.ce_scale, -1))


def test_json_report_validates_and_its_totals_recount_its_windows(clip, untrained_checkpoint):
    result = masnn("classify", clip, "--weights", untrained_checkpoint, "--json", "--stride", "200", "--top-k", "4")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    jsonschema.validate(report, schema())
    windows, totals = report["windows"], report["totals"]
    assert report["mode"] == "clip" and report["model"]["stride_us"] == 180_000  # 200 ms rounded to 4 bins of 45 ms
    assert totals["windows"] == len(windows) == (2_000_000 // 45_000 + 1 - 20) // 4 + 1
    assert totals["events_in_windows"] == sum(w["stats"]["events"] for w in windows)
    assert totals["spikes"] == pytest.approx(sum(w["stats"]["spikes"] for w in windows))
    assert totals["energy_uj"] == pytest.approx(sum(w["stats"]["energy_uj"] for w in windows))
    for key in ("macs", "attention_macs"):  # kept apart, as in masnn evaluate reports
        assert totals[key] == pytest.approx(sum(w["stats"][key] for w in windows))
    assert totals["attention_macs"] > 0  # a TCSA model: attention not folded into macs
    for w in windows:
        assert w["stats"]["spikes"] == pytest.approx(sum(w["stats"]["spikes_per_layer"].values()))
        assert len(w["top_k"]) == 4 and w["top_k"][0]["probability"] >= w["top_k"][-1]["probability"]
    assert report["model"]["classes"][0] == "hand clap"


def test_a_long_recording_gives_a_timeline(tmp_path, untrained_checkpoint):
    path = tmp_path / "long.aedat4"
    write_action_clip(path, "hand clap", "dvs128", 1, 9.0, "lab")
    classifier = Classifier.load(untrained_checkpoint)
    report = classify_recording(path, classifier, ClassifyOptions(stride_ms=450))
    jsonschema.validate(report, schema())
    assert report["mode"] == "timeline" and report["segments"]
    assert report["segments"][0]["start_s"] == 0.0
    assert sum(s["windows"] for s in report["segments"]) == len(report["windows"])


@pytest.mark.parametrize("sensor, size", [("davis346", [346, 260]), ("dvxplorer", [640, 480]), ("dvxplorer-lite", [320, 240])])
def test_any_sensor_is_mapped_to_the_model_input(tmp_path, untrained_checkpoint, sensor, size):
    path = tmp_path / f"{sensor}.aedat4"
    write_action_clip(path, "right hand wave", sensor, 2, 1.2, "lab")
    report = classify_recording(path, Classifier.load(untrained_checkpoint), ClassifyOptions())
    assert report["recording"]["sensor"] == size
    assert report["totals"]["events_in_windows"] > 0


@pytest.mark.parametrize("name", ["davis346_lab_scene.aedat4", "dvxplorer_320x240_person.aedat4"])
def test_real_aedat4_recordings(real_data, untrained_checkpoint, name):
    result = masnn("classify", real_data / name, "--weights", untrained_checkpoint, "--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    jsonschema.validate(report, schema())
    with open_recording(real_data / name) as recording:
        assert report["recording"]["sensor"] == [recording.info.width, recording.info.height]
    assert report["totals"]["events_in_windows"] > 0


@pytest.mark.parametrize("args, message", [
    (["missing.aedat4"], "missing.aedat4: no such file"),
    (["{clip}", "--weights", "no-such-model"], "no-such-model: neither a checkpoint file nor a shipped model"),
    (["{clip}", "--weights", "{clip}"], "not a readable masnn checkpoint"),
    (["{clip}", "--mode", "sideways", "--weights", "{weights}"], "--mode: must be one of auto, clip, timeline"),
    (["{clip}", "--stride", "0", "--weights", "{weights}"], "--stride: input should be greater than or equal to 0.001"),
    (["{clip}", "--render", "out.avi", "--weights", "{weights}"], "--render: must end in .mp4 or .gif"),
    (["{clip}", "--window", "0.001", "--weights", "{weights}"], "--window: 0.001 ms gives frames of 0.05 us"),
    (["{clip}", "--device", "tpu", "--weights", "{weights}"], "--device: must be auto, cpu, cuda or cuda:N"),
])
def test_bad_input_is_one_error_line(clip, untrained_checkpoint, args, message):
    result = masnn("classify", *[a.format(clip=clip, weights=untrained_checkpoint) for a in args])
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], result.stderr


def test_the_python_api_checks_its_options_too(untrained_checkpoint):
    for options, message in [(dict(stride_ms=float("nan")), "--stride"), (dict(window_ms=0.0), "--window"),
                             (dict(top_k=0), "--top-k"), (dict(min_events=-1), "--min-events"), (dict(mode="x"), "--mode")]:
        with pytest.raises(ValueError, match=message):
            ClassifyOptions(**options)
    with pytest.raises(ValueError, match="--window: 0.001 ms gives frames of 0.05 us"):
        Classifier.load(untrained_checkpoint, "cpu", window_ms=0.001)
    with pytest.raises(ValueError, match="--device: must be auto, cpu, cuda or cuda:N"):
        Classifier.load(untrained_checkpoint, "tpu")


def test_windows_are_bounded_by_the_recording_and_their_framing(clip):
    with open_recording(clip) as recording:  # 2 s: 10 frames of 200 ms, a window of 4 at each of the first 7
        assert len(list(iter_windows(recording, FramingConfig(dt_us=200_000, n_frames=4, size=8), 1))) == 7
        for framing in (FramingConfig(dt_us=0, n_frames=4), FramingConfig(dt_us=-45_000, n_frames=4),
                        FramingConfig(dt_us=1_000, n_frames=0)):
            with pytest.raises(ValueError, match="both must be at least 1"):
                next(iter_windows(recording, framing, 10_000))
        with pytest.raises(ValueError, match="--stride"):
            next(iter_windows(recording, FramingConfig(dt_us=1_000, n_frames=4), -5))


def test_too_many_windows_are_refused_before_any_frame(clip, monkeypatch):
    import masnn.classify as classify

    monkeypatch.setattr(classify, "MAX_WINDOWS", 1_000)
    with open_recording(clip) as recording:
        with pytest.raises(ValueError, match=r"guitar.aedat4: 2.0 s in frames of 1000 us make 2,0\d\d frames and 1,9\d\d windows"):
            next(iter_windows(recording, FramingConfig(dt_us=1_000, n_frames=20), 1_000))


def test_a_recording_without_a_time_range_is_stopped_at_the_bound(tmp_path, monkeypatch):
    import aedat_test_writers as aw

    import masnn.classify as classify

    k = np.arange(2000)  # 1 s of events, in AEDAT 3.1: no time range before decoding
    path = tmp_path / "long.aedat"
    aw.write_aedat31(path, aw.polarity_packets(k % 128, k % 128, 1000 + 500 * k, k % 2, sizes=(500,)))
    monkeypatch.setattr(classify, "MAX_BINS", 5_000)
    with open_recording(path) as recording:
        assert recording.info.time_range is None
        with pytest.raises(ValueError, match=r"long.aedat: .* frames of 100 us make \d"):
            list(iter_windows(recording, FramingConfig(dt_us=100, n_frames=4, size=8), 100_000))


def test_cli_render_writes_a_video_opencv_reads(clip, untrained_checkpoint, tmp_path):
    import cv2

    out = tmp_path / "clip.mp4"
    result = masnn("classify", clip, "--weights", untrained_checkpoint, "--render", out)
    assert result.returncode == 0, result.stderr
    video = cv2.VideoCapture(str(out))
    frames = int(video.get(cv2.CAP_PROP_FRAME_COUNT))
    ok, image = video.read()
    video.release()
    assert ok and image.shape[:2] == (360, 640)
    bins = 2_000_000 // 45_000 + 1  # 45 ms bins of the 2 s clip; windows of 20 bins every 10 (half a window)
    assert frames == (bins - 20) // 10 * 10 + 20  # each bin a window covers, once: the video plays in real time
    assert [p.name for p in tmp_path.iterdir() if ".tmp" in p.name] == []  # the temporary file was renamed away
