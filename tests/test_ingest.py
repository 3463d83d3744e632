"""masnn.datasets.transforms.pipeline: recording -> (denoise) -> spatial map -> MA-SNN frames, checked by hand."""
from __future__ import annotations

import subprocess
import sys

import cv2
import numpy as np
import pytest

from masnn.datasets.events import EventFileError, make_events
from masnn.datasets.io.readers import read_events
from masnn.datasets.io.writers import write_aedat31
from masnn.datasets.stats import summarize
from masnn.datasets.transforms.pipeline import FramingConfig, frame_recording
from masnn.pictures import save_frames

DT, T = 15_000, 60


def dvs128_events(seed=0, n=6000, t0=1_234_567, span=1_200_000):
    """Moving blobs plus noise on a DVS128 sensor, so the denoise filter has both kinds to sort."""
    rng = np.random.default_rng(seed)
    t = t0 + np.sort(rng.integers(0, span, n))
    phase = (t - t0) / span
    centre_x = (20 + 90 * phase).astype(np.int64)
    centre_y = (100 - 60 * phase).astype(np.int64)
    x = np.clip(centre_x + rng.integers(-3, 4, n), 0, 127)
    y = np.clip(centre_y + rng.integers(-3, 4, n), 0, 127)
    noise = rng.random(n) < 0.3
    x[noise] = rng.integers(0, 128, noise.sum())
    y[noise] = rng.integers(0, 128, noise.sum())
    return make_events(x, y, t, rng.integers(0, 2, n))


def hand_frames(events, start, dt, n_frames, size, to_xy):
    """Counts per frame, polarity and mapped pixel; ``to_xy`` maps sensor (x, y) arrays, None drops."""
    frames = np.zeros((n_frames, 2, size, size), dtype=np.int64)
    t = events["t"].astype(np.int64)
    inside = (t >= start) & (t < start + n_frames * dt)
    e = events[inside]
    x, y, keep = to_xy(e["x"].astype(np.int64), e["y"].astype(np.int64))
    k = (e["t"][keep].astype(np.int64) - start) // dt
    np.add.at(frames, (k, e["p"][keep].astype(np.int64), y[keep], x[keep]), 1)
    return frames


def dvs128_to_32(x, y):
    return x // 4, y // 4, np.ones(len(x), dtype=bool)


def hand_filter8(events, filter_time, width=128, height=128):
    """Background-activity rule, 8 neighbours, a pixel never supporting itself."""
    last = {}
    keep = []
    for i, (x, y, t) in enumerate(zip(events["x"].tolist(), events["y"].tolist(), events["t"].tolist())):
        last[(x, y)] = t
        for dx in (-1, 0, 1):
            for dy in (-1, 0, 1):
                if (dx or dy) and (x + dx, y + dy) in last and t - last[(x + dx, y + dy)] < filter_time:
                    keep.append(i)
                    break
            else:
                continue
            break
    return events[np.array(keep, dtype=np.int64)]


@pytest.fixture
def aedat31_file(tmp_path):
    events = dvs128_events()
    path = tmp_path / "sample.aedat"
    write_aedat31(path, events, packet_events=512)
    return path, events


def test_config_defaults_are_the_papers():
    config = FramingConfig()
    assert config.dt_us == 15_000
    assert config.n_frames == 60
    assert config.size == 32
    assert config.mode == "crop"
    assert config.denoise_us is None
    assert config.output_size((128, 128)) == (32, 32)
    assert FramingConfig(size=None).output_size((346, 260)) == (346, 260)
    assert config.to_dict()["dt_us"] == 15_000


@pytest.mark.parametrize("start_us", [None, 0, 150_000, 1_000_000])
def test_frame_recording_aedat31_equals_hand(aedat31_file, start_us):
    path, events = aedat31_file
    frames = frame_recording(path, start_us=start_us)
    assert frames.shape == (T, 2, 32, 32)
    assert frames.dtype == np.int16
    start = int(events["t"][0]) + (start_us or 0)
    hand = hand_frames(events, start, DT, T, 32, dvs128_to_32)
    assert hand.sum() > 0
    np.testing.assert_array_equal(frames, hand)


def test_frame_recording_other_grid(aedat31_file):
    path, events = aedat31_file
    config = FramingConfig(dt_us=40_000, n_frames=25, size=16)
    frames = frame_recording(path, config)
    hand = hand_frames(events, int(events["t"][0]), 40_000, 25, 16, lambda x, y: (x // 8, y // 8, np.ones(len(x), bool)))
    assert frames.shape == (25, 2, 16, 16)
    np.testing.assert_array_equal(frames, hand)


def test_frame_recording_with_denoise_equals_filter_first(aedat31_file):
    path, events = aedat31_file
    filter_time = 5_000
    frames = frame_recording(path, FramingConfig(denoise_us=filter_time))
    filtered = hand_filter8(events, filter_time)
    assert 0 < len(filtered) < len(events)
    hand = hand_frames(filtered, int(events["t"][0]), DT, T, 32, dvs128_to_32)
    plain = hand_frames(events, int(events["t"][0]), DT, T, 32, dvs128_to_32)
    assert hand.sum() < plain.sum()
    np.testing.assert_array_equal(frames, hand)


def test_summarize_counts(aedat31_file):
    path, events = aedat31_file
    summary = summarize(path)
    assert summary["events"] == len(events)
    assert summary["format"] == "AEDAT 3.1"
    assert summary["sensor"] == [128, 128]  # [width, height], as classify's JSON gives it
    assert summary["first_t_us"] == int(events["t"][0])
    assert summary["last_t_us"] == int(events["t"][-1])
    duration = (int(events["t"][-1]) - int(events["t"][0])) / 1e6
    assert summary["duration_s"] == pytest.approx(duration)
    assert summary["on_fraction"] == pytest.approx(np.count_nonzero(events["p"]) / len(events))
    assert summary["event_rate_per_s"] == pytest.approx(len(events) / duration)
    assert summary["active_pixels"] == len({(int(x), int(y)) for x, y in zip(events["x"], events["y"])})


def test_summarize_window(aedat31_file):
    path, events = aedat31_file
    t0 = int(events["t"][0])
    summary = summarize(path, start_us=200_000, end_us=500_000)
    window = events[(events["t"] >= t0 + 200_000) & (events["t"] < t0 + 500_000)]
    assert summary["events"] == len(window)
    assert summary["first_t_us"] == int(window["t"][0])
    assert summary["last_t_us"] == int(window["t"][-1])
    assert summary["on_fraction"] == pytest.approx(np.count_nonzero(window["p"]) / len(window))


def test_save_frames_npy_and_png(tmp_path, aedat31_file):
    path, _ = aedat31_file
    frames = frame_recording(path)
    npy = tmp_path / "frames.npy"
    save_frames(npy, frames)
    loaded = np.load(npy)
    assert loaded.dtype == frames.dtype
    np.testing.assert_array_equal(loaded, frames)

    png = tmp_path / "frames.png"
    save_frames(png, frames)
    image = cv2.imread(str(png))
    assert image is not None
    # contact sheet: 10 columns x 6 rows of 32x32 frames scaled x3 (to >= 96 px), 2-pixel gutters, a 16-pixel
    # time label under each row, a title line and a legend line of 24 pixels
    assert image.shape == (24 + 6 * (96 + 2 + 16) + 24, 10 * (96 + 2), 3)
    # no temporary files left behind
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["frames.npy", "frames.png", "sample.aedat"])


@pytest.mark.parametrize("name", ["frames.txt", "frames", "frames.npz"])
def test_save_frames_unknown_suffix_raises(tmp_path, name):
    with pytest.raises(EventFileError):
        save_frames(tmp_path / name, np.zeros((2, 2, 4, 4), dtype=np.int16))
    assert not (tmp_path / name).exists()


def test_real_dvs128_aedat2(real_data):
    path = real_data / "dvs128_aedat2" / "neal_walking.aedat"
    frames = frame_recording(path)
    assert frames.shape == (T, 2, 32, 32)
    events, info = read_events(path)
    assert info.sensor_size == (128, 128)
    t0 = int(events["t"][0])
    in_window = (events["t"] >= t0) & (events["t"] < t0 + T * DT)
    assert frames.sum() == int(in_window.sum()) > 0
    np.testing.assert_array_equal(frames, hand_frames(events, t0, DT, T, 32, dvs128_to_32))


def test_real_dvxplorer_320x240(real_data):
    path = real_data / "dvxplorer_320x240_person.aedat4"
    frames = frame_recording(path)
    assert frames.shape == (T, 2, 32, 32)
    events, info = read_events(path)
    assert info.sensor_size == (320, 240)
    t0 = int(events["t"][0])
    x = events["x"].astype(np.int64)
    in_window = (events["t"] >= t0) & (events["t"] < t0 + T * DT)
    in_crop = (x >= 40) & (x < 280)
    assert frames.sum() == int((in_window & in_crop).sum()) > 0

    def crop_240_to_32(x, y):
        keep = (x >= 40) & (x < 280)
        return (x - 40) * 32 // 240, y * 32 // 240, keep

    np.testing.assert_array_equal(frames, hand_frames(events, t0, DT, T, 32, crop_240_to_32))


def _masnn(*args):
    import subprocess
    import sys

    return subprocess.run([sys.executable, "-m", "masnn", *map(str, args)], capture_output=True, text=True, timeout=300)


def test_inspect_and_classify_agree_on_the_sensor(tmp_path, untrained_checkpoint):
    import json

    from masnn.datasets.synth.generator import write_action_clip

    path = tmp_path / "davis.aedat4"
    write_action_clip(path, "hand clap", "davis346", 1, 1.0, "lab")
    inspected = _masnn("inspect", path, "--json")
    classified = _masnn("classify", path, "--weights", untrained_checkpoint, "--json")
    assert inspected.returncode == 0 and classified.returncode == 0, inspected.stderr + classified.stderr
    assert json.loads(inspected.stdout)["sensor"] == json.loads(classified.stdout)["recording"]["sensor"] == [346, 260]
    text = _masnn("inspect", path)
    assert "346x260" in text.stdout and "[346" not in text.stdout  # "WxH" in text, [W, H] in JSON


def test_classify_reports_the_duration_of_an_aedat2_file(tmp_path, untrained_checkpoint):
    """AEDAT 2.0 has no time range up front: classify measures it (first to last event), as inspect does."""
    import json

    from aedat_test_writers import dvs128_address, write_aedat2

    rng = np.random.default_rng(3)
    n = 4000
    t = 5_000 + np.sort(rng.integers(0, 1_700_000, n))
    path = tmp_path / "walk.aedat"
    write_aedat2(path, dvs128_address(rng.integers(0, 128, n), rng.integers(0, 128, n), rng.integers(0, 2, n)), t)
    report = json.loads(_masnn("classify", path, "--weights", untrained_checkpoint, "--json").stdout)
    summary = summarize(path)
    assert report["recording"]["format"] == summary["format"] == "AEDAT 2.0"
    assert report["recording"]["duration_s"] == pytest.approx(summary["duration_s"]) == pytest.approx((t[-1] - t[0]) / 1e6)


def _masnn_frames(*args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "masnn", "frames", *map(str, args)], capture_output=True, text=True, timeout=300)


def test_frames_default_to_the_default_models_framing_and_follow_weights(tmp_path, aedat31_file):
    path, _ = aedat31_file
    assert _masnn_frames(path, "-o", tmp_path / "default.npy").returncode == 0
    default = np.load(tmp_path / "default.npy")
    assert default.shape == (20, 2, 32, 32)  # gesture-tcsa: 20 frames of 45 ms, 32 x 32, a 10 ms filter in front
    np.testing.assert_array_equal(default, frame_recording(path, FramingConfig(dt_us=45_000, n_frames=20, size=32, denoise_us=10_000)))
    result = _masnn_frames(path, "-o", tmp_path / "gait.npy", "--weights", "gait-tcsa")
    assert result.returncode == 0, result.stderr
    gait = np.load(tmp_path / "gait.npy")  # gait-tcsa: 20 frames of 100 ms
    np.testing.assert_array_equal(gait, frame_recording(path, FramingConfig(dt_us=100_000, n_frames=20, size=32)))
    assert gait.sum() > default.sum()  # the longer frames take in more of the recording
    # options replace their own fields only: the default model's filter stays unless --denoise says otherwise
    result = _masnn_frames(path, "-o", tmp_path / "mine.npy", "--dt", "10", "-T", "7", "--size", "16")
    assert result.returncode == 0, result.stderr
    np.testing.assert_array_equal(np.load(tmp_path / "mine.npy"),
                                  frame_recording(path, FramingConfig(dt_us=10_000, n_frames=7, size=16, denoise_us=10_000)))
    result = _masnn_frames(path, "-o", tmp_path / "bare.npy", "--dt", "10", "-T", "7", "--size", "16", "--denoise", "0")
    assert result.returncode == 0, result.stderr
    np.testing.assert_array_equal(np.load(tmp_path / "bare.npy"),
                                  frame_recording(path, FramingConfig(dt_us=10_000, n_frames=7, size=16)))


def test_contact_sheet_has_a_title_tile_times_and_an_on_off_legend(tmp_path, aedat31_file):
    path, _ = aedat31_file
    result = _masnn_frames(path, "-o", tmp_path / "sheet.png")
    assert result.returncode == 0, result.stderr
    image = cv2.imread(str(tmp_path / "sheet.png"))
    bare = 2 * (96 + 2), 10 * (96 + 2)  # 20 tiles of 96 px in 10 columns
    assert image.shape[0] > bare[0] + 40 and image.shape[1] >= bare[1]
    legend = image[-24:]
    red = np.all(legend == (0, 0, 255), axis=2)  # BGR
    blue = np.all(legend == (255, 0, 0), axis=2)
    assert red.sum() >= 100 and blue.sum() >= 100  # the two swatches
    assert np.argwhere(red)[:, 1].max() < np.argwhere(blue)[:, 1].min()  # ON first, then OFF
    text = legend.min(axis=2) > 150  # light text beside the swatches
    assert text[:, 20:50].any() and text[:, 120:].sum() > 100
    title, labels = image[:24], image[24 + 98 : 24 + 98 + 16]  # the title line; the times under the first row
    assert (title.min(axis=2) > 150).sum() > 200
    assert all((labels[:, c * 98 : (c + 1) * 98].min(axis=2) > 150).sum() > 20 for c in range(10))  # every tile's time
