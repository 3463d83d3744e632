"""Synthetic recordings: the real datasets' layouts, determinism, and motions that are what they are called."""
import csv
import subprocess
import sys
from dataclasses import replace

import cv2
import numpy as np
import pytest

from masnn.datasets.events import EVENT_DTYPE
from masnn.datasets.io.readers import read_events
from masnn.datasets.loaders.table import GESTURE_CLASSES
from masnn.datasets.synth.emulator import DvsEmulator, PixelParams
from masnn.datasets.synth.generator import (
    GESTURE_PRESETS,
    gait_recording,
    gesture_recording,
    random_scene,
    simulate,
    split_users,
    veiling_glare,
    walker_placement,
    write_gait_dataset,
    write_gesture_dataset,
)
from masnn.datasets.synth.motions import (
    Body,
    Interlude,
    View,
    front_skeleton,
    gesture_pose,
    lean_forward,
    random_gait,
    random_style,
    rest_pose,
    sit_pose,
    walk_pose,
)

QUIET = PixelParams(background_rate_hz=0.0, hot_pixel_fraction=0.0)


@pytest.fixture(scope="module")
def folder(gesture_root):
    """The DvsGesture folder of the session's tiny gesture set."""
    return gesture_root / "DvsGesture"


def test_gesture_layout_matches_the_real_dataset(folder):
    train, test = split_users(3)
    assert (train, test) == ([1, 2], [3])
    assert (folder / "trials_to_train.txt").read_text().split() == ["user01_lab.aedat", "user02_lab.aedat"]
    assert (folder / "trials_to_test.txt").read_text().split() == ["user03_lab.aedat"]
    for user in (1, 2, 3):
        with open(folder / f"user{user:02d}_lab_labels.csv", newline="") as f:
            rows = list(csv.reader(f))
        assert rows[0] == ["class", "startTime_usec", "endTime_usec"]
        labels = [(int(c), int(s), int(e)) for c, s, e in rows[1:]]
        assert [c for c, _, _ in labels] == list(range(1, 12))
        events, info = read_events(folder / f"user{user:02d}_lab.aedat")
        assert (info.format, info.sensor_size, info.camera) == ("AEDAT 3.1", (128, 128), "DVS128")
        # labels live in the recording's timebase: every gesture window holds events, and they follow each other
        for (_, start, end), (_, next_start, _) in zip(labels, labels[1:] + [(0, 10**18, 0)]):
            assert start < end <= next_start
            assert np.count_nonzero((events["t"] >= start) & (events["t"] < end)) > 100


def test_gesture_files_are_read_by_tonic(folder):
    import tonic.io

    path = str(folder / "user01_lab.aedat")
    version, data_start, _ = tonic.io.read_aedat_header_from_file(path)
    words = tonic.io.get_aer_events_from_file(path, version, data_start)  # raw address and timestamp
    ours, _ = read_events(path)
    assert version == 3.1
    address = words["address"].astype(np.int64)
    np.testing.assert_array_equal(words["timeStamp"], ours["t"])
    np.testing.assert_array_equal(address >> 17, ours["x"])
    np.testing.assert_array_equal((address >> 2) & 0x7FFF, ours["y"])
    np.testing.assert_array_equal((address >> 1) & 1, ours["p"])


def test_same_seed_same_bytes_other_seed_other_bytes(tmp_path, folder):
    again = tmp_path / "again"
    write_gesture_dataset(again, users=1, seed=7, preset=GESTURE_PRESETS["tiny"], workers=1)
    assert (again / "DvsGesture/user01_lab.aedat").read_bytes() == (folder / "user01_lab.aedat").read_bytes()
    other = tmp_path / "other"
    write_gesture_dataset(other, users=1, seed=8, preset=GESTURE_PRESETS["tiny"], workers=1)
    assert (other / "DvsGesture/user01_lab.aedat").read_bytes() != (folder / "user01_lab.aedat").read_bytes()


def test_gait_layout_and_identity_consistency(tmp_path):
    write_gait_dataset(tmp_path, subjects=2, walks=1, seed=3, duration=0.6, workers=1)
    files = sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*.txt"))
    assert files == ["test/01/000.txt", "test/02/000.txt", "train/01/000.txt", "train/02/000.txt"]
    events, info = read_events(tmp_path / "train/01/000.txt")
    assert info.format == "text t x y p" and len(events) > 100
    line = (tmp_path / "train/01/000.txt").read_text().splitlines()[0].split()
    assert len(line) == 4 and int(line[0]) == events["t"][0]  # t x y p, in that order


def clip_events(gesture: int, seconds: float = 1.6, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    scene = random_scene((128, 128), "lab", rng, body=Body())
    scene = type(scene)(**{**scene.__dict__, "shake_px": 0.0})
    style = random_style(gesture, np.random.default_rng(seed + 1))

    def pose_at(t):
        return gesture_pose(gesture, t, style, scene.body), scene.placement, None

    return np.concatenate(list(simulate(scene, pose_at, seconds, 0, QUIET, frame_rate=400.0)), dtype=EVENT_DTYPE), scene, style


def rotation_sense(events: np.ndarray, window_us: int) -> float:
    """Sum of cross products of the ON-event centroid's successive positions around their mean:
    > 0 turns clockwise on screen (y down), < 0 counter-clockwise."""
    on = events[events["p"] == 1]
    bins = (on["t"] - on["t"][0]) // window_us
    centroids = np.array([[on["x"][bins == b].mean(), on["y"][bins == b].mean()] for b in np.unique(bins) if (bins == b).sum() > 20])
    centred = centroids - centroids.mean(axis=0)
    return float(np.sum(centred[:-1, 0] * centred[1:, 1] - centred[:-1, 1] * centred[1:, 0]))


@pytest.mark.parametrize(
    "gesture,screen_sense,side",
    [
        (3, "counter-clockwise", "left"),  # right arm clockwise (as the subject sees it): image left, CCW on screen
        (4, "clockwise", "left"),
        (5, "counter-clockwise", "right"),  # left arm clockwise
        (6, "clockwise", "right"),
    ],
)
def test_arm_circles_turn_the_named_way_on_the_named_side(gesture, screen_sense, side):
    events, scene, style = clip_events(gesture, seconds=1.2 / style_frequency(gesture))
    sense = rotation_sense(events, window_us=int(1e6 / style_frequency(gesture) / 12))
    assert (sense > 0) == (screen_sense == "clockwise"), (GESTURE_CLASSES[gesture], sense)
    moving = np.median(events["x"])
    assert (moving < 64) == (side == "left")


def style_frequency(gesture: int) -> float:
    return random_style(gesture, np.random.default_rng(1)).frequency


@pytest.mark.parametrize("gesture,side", [(1, "left"), (2, "right")])
def test_hand_waves_happen_on_the_waving_arms_side(gesture, side):
    events, _, _ = clip_events(gesture, seconds=1.0)
    assert (np.median(events["x"]) < 64) == (side == "left")
    # a wave moves the hand sideways above the shoulder: the events' upper part sways in x
    upper = events[events["y"] < np.percentile(events["y"], 30)]
    assert np.ptp(upper["x"]) > 8


def test_hand_clap_meets_in_front_of_the_body_on_either_side_of_the_midline():
    body = Body()
    centres, across, rising = [], [], []
    for seed in range(24):
        style = random_style(0, np.random.default_rng(seed))
        poses = [gesture_pose(0, t, style, body) for t in np.linspace(0, 1 / style.frequency, 12, endpoint=False)]
        centres.append(np.mean([(p["wrist_r"][0] + p["wrist_l"][0]) / 2 for p in poses]))
        across += [abs(p[f"wrist_{side}"][0] - p[f"elbow_{side}"][0]) for p in poses for side in "rl"]
        rising += [p[f"elbow_{side}"][1] - p[f"wrist_{side}"][1] for p in poses for side in "rl"]
    centres = np.array(centres)
    assert np.abs(centres).max() < 0.25  # within the shoulders' reach (half width 0.12 plus the forearm)
    assert centres.min() < -0.08 and centres.max() > 0.08  # off the midline, on both sides (a real clap: ~0.2)
    # the forearms point at the camera, not across the body (a forearm lying across looks like a long bar)
    assert max(across) < 0.8 * body.forearm and np.median(across) < 0.7 * body.forearm, (max(across), np.median(across))
    # the hands above the elbows (y down): the real clap's moving region is as tall as half its width
    assert min(rising) > 0.05 * body.forearm and np.median(rising) > 0.3 * body.forearm


def test_arm_circles_are_taller_than_wide_and_some_sit_well_out_from_the_shoulder():
    body, ratios, offsets = Body(), [], []
    shoulder = front_skeleton(body)["shoulder_r"]
    for seed in range(24):
        style = random_style(3, np.random.default_rng(seed))
        wrists = np.array([gesture_pose(3, t, style, body)["wrist_r"] for t in np.linspace(0, 1 / style.frequency, 24, endpoint=False)])
        width, height = np.ptp(wrists[:, 0]), np.ptp(wrists[:, 1])
        ratios.append(height / width)
        offsets.append((shoulder[0] - (wrists[:, 0].max() + wrists[:, 0].min()) / 2) / height)
    # the real DVS128 Gesture circle: 1.6 times as tall as wide, its centre a quarter of its height out from the
    # shoulder (the previous range reached 0.20 at most)
    assert min(ratios) < 1.6 < max(ratios) and min(ratios) > 0.9
    assert max(offsets) > 0.24 and min(offsets) > -0.05


def test_noise_parameters_move_the_statistics_the_expected_way():
    rng = np.random.default_rng(5)
    scene = random_scene((128, 128), "lab", rng, body=Body())

    def still(t):
        return gesture_pose(0, 0.0, random_style(0, np.random.default_rng(0)), scene.body), scene.placement, None

    def count(params):
        return sum(len(c) for c in simulate(scene, still, 1.0, 0, params, frame_rate=200.0))

    assert count(PixelParams(background_rate_hz=2.0)) > count(PixelParams(background_rate_hz=0.2))
    assert count(PixelParams(hot_pixel_fraction=0.01)) > count(PixelParams(hot_pixel_fraction=0.0))


def test_gait_walker_crosses_the_field_of_view():
    events = np.concatenate(list(gait_recording(subject=1, session=0, walk=0, seed=0, duration=2.0)), dtype=EVENT_DTYPE)
    first = events[events["t"] < events["t"][0] + 300_000]
    last = events[events["t"] > events["t"][-1] - 300_000]
    assert abs(np.median(last["x"]) - np.median(first["x"])) > 15


def test_gait_camera_is_fixed_so_feet_share_the_ground_and_a_taller_walker_looks_taller():
    gaits = {subject: random_gait(np.random.default_rng([0, subject])) for subject in range(1, 21)}
    short = min(gaits, key=lambda s: gaits[s].stature)
    tall = max(gaits, key=lambda s: gaits[s].stature)

    def lowest_ankle_and_head(subject):
        placement = walker_placement(gaits[subject], seed=0, session=1)
        poses = [placement.to_pixels(walk_pose(t, gaits[subject], 1)) for t in np.linspace(0, 2, 200)]
        ankle = max(max(p["ankle_r"][1], p["ankle_l"][1]) for p in poses)  # image y grows downwards
        head = min(p["head"][1] for p in poses)
        return ankle, head

    (short_ground, short_head), (tall_ground, tall_head) = lowest_ankle_and_head(short), lowest_ankle_and_head(tall)
    assert tall_ground == pytest.approx(short_ground, abs=2.0)  # one walking line, one ground row
    stature_ratio = gaits[tall].stature / gaits[short].stature
    assert stature_ratio > 1.1
    assert (tall_ground - tall_head) / (short_ground - short_head) == pytest.approx(stature_ratio, rel=0.1)


def test_cli_writes_an_aedat4_clip(tmp_path):
    out = tmp_path / "clip.aedat4"
    result = subprocess.run(
        [sys.executable, "-m", "masnn", "synth", "recording", "--action", "air guitar", "--out", str(out), "--duration", "0.5", "--sensor", "dvxplorer-lite"],
        capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stderr
    events, info = read_events(out)
    assert (info.format, info.sensor_size) == ("AEDAT 4.0", (320, 240)) and len(events) > 1000


def test_cli_refuses_an_unknown_action(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "masnn", "synth", "recording", "--action", "juggling", "--out", str(tmp_path / "c.aedat4")],
        capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 2 and "unknown action" in result.stderr and "Traceback" not in result.stderr


def test_cli_gesture_set_in_parallel_equals_serial(tmp_path, folder):
    result = subprocess.run(
        [sys.executable, "-m", "masnn", "synth", "gesture", "--out", str(tmp_path), "--users", "3", "--seed", "7", "--preset", "tiny", "--workers", "2"],
        capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stderr
    for name in ("user01_lab.aedat", "user03_lab_labels.csv", "trials_to_test.txt"):
        assert (tmp_path / "DvsGesture" / name).read_bytes() == (folder / name).read_bytes()


def test_a_terminated_parallel_gesture_set_stops_without_finishing_its_queue(tmp_path):
    """SIGTERM while two workers render: the command exits 143, and no worker goes on to render the recordings
    it had started or queued (with a ProcessPoolExecutor, five more recordings appeared after the signal)."""
    import signal
    import time

    folder = tmp_path / "DvsGesture"
    command = [sys.executable, "-m", "masnn", "synth", "gesture", "--out", str(tmp_path), "--users", "40", "--preset", "tiny", "--workers", "2"]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    recordings = lambda: len([p for p in folder.glob("*.aedat") if not p.name.startswith(".")])  # noqa: E731 (not temporaries)
    deadline = time.monotonic() + 240
    while recordings() < 1 and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert process.poll() is None, "the set finished before it could be interrupted"
    written = recordings()
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 143 and "Traceback" not in stderr
    assert recordings() <= written + 2  # at most one per worker, finished between the count and the signal
    assert recordings() < 80 and not (folder / "trials_to_train.txt").exists()
    assert not [p for p in folder.iterdir() if ".tmp" in p.name or p.name.startswith(".")]


def test_cli_stats_compares_recordings(folder):
    import json

    paths = [str(folder / "user01_lab.aedat"), str(folder / "user02_lab.aedat")]
    result = subprocess.run([sys.executable, "-m", "masnn", "synth", "stats", "--json", *paths], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    rows = json.loads(result.stdout)
    assert [r["events"] for r in rows] == [len(read_events(p)[0]) for p in paths]
    assert all(0.5 < r["on_off_ratio"] < 2 for r in rows)
    assert all(r["sensor"] == [128, 128] for r in rows)  # [width, height], as inspect --json and classify give it


def test_air_drums_strike_up_and_down_with_both_hands():
    events, scene, _ = clip_events(8, seconds=1.5)
    on = events[events["p"] == 1]
    centre_x = scene.placement.pelvis_x
    for side in (on["x"] < centre_x, on["x"] >= centre_x):
        hand = on[side]
        # per 25 ms window, the hand's events move mostly vertically
        bins = (hand["t"] - hand["t"][0]) // 25_000
        centroids = np.array([[hand["x"][bins == b].mean(), hand["y"][bins == b].mean()] for b in np.unique(bins) if (bins == b).sum() > 20])
        assert np.std(centroids[:, 1]) > np.std(centroids[:, 0])


def test_air_drummers_range_from_quick_hits_to_hands_that_never_stop():
    body, low = Body(), []
    for seed in range(24):
        style = random_style(8, np.random.default_rng(seed))
        heights = np.array([gesture_pose(8, t, style, body)["wrist_r"][1]
                            for t in np.linspace(0, 3 / style.frequency, 240, endpoint=False)])
        low.append(np.mean(heights > (heights.min() + heights.max()) / 2))  # y down: the share of time near the drum
    # A hit over a share h of the cycle keeps the hand in its lower half for 2h/3 of it: 0.23 for the previous
    # quick hits (h = 0.35) and about 0.6 for a real DVS128 Gesture drummer, whose hands rise and fall like a sine.
    assert min(low) < 0.3 and np.median(low) > 0.45, sorted(low)  # the previous ones: median 0.27


def test_air_guitar_neck_hand_on_the_image_right_above_the_strumming_hand():
    joints_events, scene, style = clip_events(9, seconds=1.5)
    centre_x = scene.placement.pelvis_x
    right_side = joints_events[joints_events["x"] > centre_x + 0.15 * scene.placement.height_px]
    strumming = joints_events[np.abs(joints_events["x"] - centre_x) < 0.08 * scene.placement.height_px]
    assert len(right_side) > 100 and len(strumming) > 100
    # the subject's left hand holds the neck out to the image's right, higher than the strumming hand
    assert np.median(right_side["y"]) < np.median(strumming["y"])


def test_arm_roll_stays_in_front_of_the_chest():
    events, scene, _ = clip_events(7, seconds=1.5)
    centre_x = scene.placement.pelvis_x
    width = scene.placement.height_px * 0.2
    assert np.mean(np.abs(events["x"] - centre_x) < width) > 0.7


def test_interludes_leave_unlabelled_stretches_and_keep_the_gestures():
    plain = GESTURE_PRESETS["tiny"]
    _, without = gesture_recording(3, "lab", 0, plain)
    _, labels = gesture_recording(3, "lab", 0, replace(plain, interludes=2, interlude_s=(1.5, 1.6)))
    assert [c for c, _, _ in labels] == list(range(1, 12))
    lengths = np.array([e - s for _, s, e in labels]) - [e - s for _, s, e in without]
    assert np.abs(lengths).max() <= 1  # the same gestures (microseconds rounded at other starts)
    gaps = np.array([s - e for (_, _, e), (_, s, _) in zip(labels[:-1], labels[1:])])
    assert (gaps >= 1_500_000).sum() == 2 and np.sort(gaps)[:-2].max() <= 200_000  # two interludes; the rest as tiny's gaps


@pytest.mark.parametrize("kind, axis, sign", [("step", 0, -1), ("crouch", 1, 1)])
def test_steps_and_crouches_move_the_whole_body_away_and_back(kind, axis, sign):
    interlude = Interlude(kind, duration=2.0, amplitude=0.2, travel_s=0.6, direction=-1)
    offsets = np.array([interlude.offset(t) for t in np.linspace(0, 2.0, 201)])
    assert np.abs(offsets[[0, -1]]).max() < 1e-9  # starts and ends where the person stood
    assert offsets[100, axis] == pytest.approx(sign * 0.2)  # held away in the middle (a crouch goes down: +y)
    assert np.abs(np.diff(offsets[:, axis])).max() < 0.2 * 1.5 * 0.01 / 0.6 * 1.01  # smoothstep: at most 1.5x the mean speed
    assert Interlude(kind, 2.0, 0.2).idle_gain(1.0) == 1.0


def test_a_crouch_leans_the_upper_body_towards_the_camera_and_back():
    crouch = Interlude("crouch", duration=2.0, amplitude=0.2, travel_s=0.6)
    assert crouch.lean(0.0) == crouch.lean(2.0) == 0.0 and crouch.lean(1.0) == pytest.approx(0.3)
    assert Interlude("step", 2.0, 0.2).lean(1.0) == 0.0
    joints = front_skeleton(Body())
    leaning = lean_forward(joints, 0.3)
    for name in ("head", "shoulder_r"):
        assert np.linalg.norm(leaning[name]) == pytest.approx(np.linalg.norm(joints[name]))  # turned about the pelvis
        assert leaning[name][1] > joints[name][1] and leaning[name][2] < joints[name][2]  # lower on screen, nearer
    np.testing.assert_allclose(leaning["wrist_l"] - leaning["shoulder_l"], joints["wrist_l"] - joints["shoulder_l"])  # arms hang
    assert all(np.array_equal(leaning[name], joints[name]) for name in ("pelvis", "knee_r", "ankle_l"))


BONES = [("hip_r", "knee_r"), ("knee_r", "ankle_r"), ("hip_l", "knee_l"), ("knee_l", "ankle_l"),
         ("shoulder_r", "elbow_r"), ("elbow_r", "wrist_r"), ("pelvis", "neck"), ("neck", "head")]


def _bone_lengths(joints):
    return np.array([np.linalg.norm(joints[a] - joints[b]) for a, b in BONES])


def test_without_sits_the_interludes_are_drawn_as_before_there_were_sits():
    """The shipped models' data (``--sits 0``) must not change: the four kinds' draws, in their order."""
    kinds = ["still", "fidget", "step", "crouch"]
    for seed in range(40):
        reference = np.random.default_rng(seed)
        kind = str(reference.choice(kinds, p=[0.2, 0.2, 0.3, 0.3]))
        amplitudes = [reference.uniform(0.1, 0.5), reference.uniform(2.5, 5.0), reference.uniform(0.08, 0.3),
                      reference.uniform(0.08, 0.35)]
        expected = Interlude(kind, 3.0, amplitudes[kinds.index(kind)], 3.0 * reference.uniform(0.25, 0.45),
                             int(reference.choice([-1, 1])))
        rng = np.random.default_rng(seed)
        assert Interlude.random(rng, 3.0) == expected and rng.uniform() == reference.uniform()
    sits = [Interlude.random(np.random.default_rng(seed), 3.0, sit_share=0.3) for seed in range(200)]
    assert 0.2 < np.mean([i.kind == "sit" for i in sits]) < 0.4
    assert all((i.view is not None) == (i.kind == "sit") for i in sits)


def _repeat_share(events, within_us=4):
    """Share of events that repeat their pixel's previous event (same polarity) within ``within_us``: a plain loop."""
    last, repeats = {}, 0
    for x, y, t, p in zip(events["x"].tolist(), events["y"].tolist(), events["t"].tolist(), events["p"].tolist()):
        before = last.get((x, y))
        repeats += before is not None and before[1] == p and t - before[0] <= within_us
        last[(x, y)] = (t, p)
    return repeats / len(events)


def test_ideal_pixels_are_the_same_recording_without_readout_repeats():
    tiny = GESTURE_PRESETS["tiny"]
    measured_chunks, measured_labels = gesture_recording(2, "lab", 0, tiny)
    ideal_chunks, ideal_labels = gesture_recording(2, "lab", 0, replace(tiny, pixels="ideal"))
    assert ideal_labels == measured_labels  # the same person, gestures and timeline
    measured, ideal = np.concatenate(list(measured_chunks)), np.concatenate(list(ideal_chunks))
    assert 0.5 < len(ideal) / len(measured) < 2.0  # the same motion fires a like number of events
    assert _repeat_share(measured[:150_000]) > 0.03  # this camera repeats 5-20 % of its events
    assert _repeat_share(ideal[:150_000]) < 0.005  # only chance coincidences


def test_a_seated_person_has_level_thighs_upright_shins_and_planted_feet():
    body = Body()
    standing = rest_pose(0.0, body)
    seated = sit_pose(1.0, 0.0, body, standing)
    legs = [body.thigh, body.shin] * 2  # the standing skeleton's legs are a little longer: out and forward at the knee
    np.testing.assert_allclose(_bone_lengths(seated), [*legs, *_bone_lengths(standing)[4:]], rtol=1e-6)
    for side in ("r", "l"):
        np.testing.assert_allclose(seated[f"ankle_{side}"], standing[f"ankle_{side}"])  # the feet stay
        thigh = seated[f"knee_{side}"] - seated[f"hip_{side}"]
        shin = seated[f"ankle_{side}"] - seated[f"knee_{side}"]
        assert thigh[2] < -0.9 * np.linalg.norm(thigh)  # level, pointing at the camera
        assert shin[1] > 0.9 * np.linalg.norm(shin)  # upright
    np.testing.assert_allclose(seated["pelvis"], [0.0, 0.95 * body.thigh, body.thigh])  # a thigh down and back
    np.testing.assert_allclose(sit_pose(0.0, 0.0, body, standing)["knee_r"][:2], standing["knee_r"][:2], atol=0.02)
    leaning = sit_pose(1.0, 0.4, body, standing)
    assert leaning["head"][2] < seated["head"][2] and np.array_equal(leaning["knee_l"], seated["knee_l"])


def test_a_sit_goes_down_and_up_with_pauses_at_a_human_speed():
    sit = Interlude("sit", duration=8.0, amplitude=0.6, travel_s=1.0, direction=1)
    times = np.linspace(0.0, 5.0, 5001)
    seated = np.array([sit.seated(t) for t in times])
    assert seated[0] == 0.0 and sit.seated(1.0) == pytest.approx(1.0)  # down in one travel
    assert np.ptp([sit.seated(t) for t in np.linspace(1.0, 1.25, 26)]) == 0.0  # a pause of a quarter of it
    assert sit.seated(2.25) == pytest.approx(0.0) and sit.seated(3.5) == pytest.approx(1.0)  # up, a pause, down again
    assert np.abs(np.diff(seated)).max() <= 1.5 * 0.001 / 1.0 * 1.01  # smoothstep: at most 1.5x the mean speed
    assert Interlude("sit", 8.0, 0.6, 1.0, direction=-1).seated(0.0) == 1.0  # may start seated
    lean = np.array([sit.sit_lean(t) for t in times])
    assert lean.argmax() in (500, 1750, 3000, 4250) or abs(seated[lean.argmax()] - 0.5) < 0.01  # largest on the way
    assert lean.max() == pytest.approx(0.7 * 0.6) and sit.sit_lean(0.0) == sit.sit_lean(1.1) == 0.0


def test_another_cameras_view_turns_the_body_rigidly():
    body = Body()
    joints = sit_pose(0.5, 0.2, body, rest_pose(0.0, body))
    rng = np.random.default_rng(0)
    for _ in range(20):
        view = View.random(rng)
        np.testing.assert_allclose(_bone_lengths(view.seen(joints)), _bone_lengths(joints), rtol=1e-9)
    standing = front_skeleton(body)
    side = View(yaw=np.pi / 2).seen(standing)
    assert abs(side["shoulder_r"][0] - side["shoulder_l"][0]) < 1e-9  # side on: one shoulder behind the other
    assert abs(side["shoulder_r"][2] - side["shoulder_l"][2]) == pytest.approx(2 * body.shoulder_half_width)
    rolled = View(roll=np.pi / 2).seen(standing)
    assert abs(rolled["neck"][1]) < 1e-9 and abs(rolled["neck"][0]) == pytest.approx(body.torso)  # upright reads as level
    above = View(pitch=0.8).seen(standing)
    assert above["head"][2] < above["pelvis"][2] - 0.2  # from above, the head is nearer than the pelvis
    assert View().seen(standing)["head"] == pytest.approx(standing["head"])


def test_a_sit_interlude_shows_a_small_person_where_the_view_puts_them(monkeypatch):
    view = View(yaw=1.2, pitch=0.5, roll=0.3, size=0.35, x=0.8, y=0.25)
    monkeypatch.setattr(View, "random", classmethod(lambda cls, rng: view))
    preset = replace(GESTURE_PRESETS["tiny"], interludes=2, interlude_s=(2.0, 2.2), sit_share=1.0)
    chunks, labels = gesture_recording(3, "lab", 0, preset, params=QUIET)
    events = np.concatenate(list(chunks))
    gaps = [(end, start) for (_, _, end), (_, start, _) in zip(labels[:-1], labels[1:]) if start - end > 1_500_000]
    assert len(gaps) == 2
    stretch = events[(events["t"] > gaps[0][0] + 300_000) & (events["t"] < gaps[0][1] - 300_000)]  # clear of the cuts
    gesture = events[(events["t"] > labels[0][1] + 100_000) & (events["t"] < labels[0][2] - 100_000)]
    # the gesture framing's body is at most 1.5 sensor heights tall; the pelvis is at most 0.6 body heights from any part
    near = lambda e: np.hypot(e["x"] - 0.8 * 128, e["y"] - 0.25 * 128) < 0.6 * 0.35 * 1.5 * 128  # noqa: E731
    assert len(stretch) > 1000 and near(stretch).mean() > 0.8 and near(gesture).mean() < 0.5


def test_still_and_fidget_scale_the_idle_motion_eased_in_and_out():
    fidget = Interlude("fidget", duration=2.0, amplitude=4.0)
    assert fidget.offset(1.0) == (0.0, 0.0)
    assert fidget.idle_gain(0.0) == fidget.idle_gain(2.0) == 1.0 and fidget.idle_gain(1.0) == 4.0
    assert Interlude("still", 2.0, 0.2).idle_gain(1.0) == pytest.approx(0.2)


def test_veiling_glare_spreads_its_share_of_each_pixels_light_as_a_gaussian():
    point = np.zeros((65, 65), np.float32)
    point[32, 32] = 1.0
    share, sigma = 0.2, 4.0
    offsets = np.arange(-16, 17)
    kernel = np.exp(-(offsets**2) / (2 * sigma**2))
    kernel /= kernel.sum()
    expected = share * np.outer(kernel, kernel)
    expected[16, 16] += 1 - share
    out = veiling_glare(point, share, sigma)
    np.testing.assert_allclose(out[16:49, 16:49], expected, atol=1e-6)
    assert abs(out.sum() - 1.0) < 1e-4  # light is moved, not made
    flat = np.full((20, 30), 0.4, np.float32)
    np.testing.assert_allclose(veiling_glare(flat, 0.3, 5.0), flat, rtol=1e-6)
    assert veiling_glare(point, 0.0, sigma) is point


def test_glare_fires_pixels_around_a_moving_object_and_none_without_it():
    # a bright square crossing a dim field: through glare its halo changes the light a few pixels around its
    # path, which fires the pixels that sat near a threshold there
    def frames(glare):
        out = []
        for k in range(60):
            image = np.full((48, 64), 0.2, np.float32)
            image[20:28, 8 + k // 2 : 16 + k // 2] = 1.0
            out.append(veiling_glare(image, glare, 5.0))
        return out

    path = np.zeros((48, 64), bool)
    path[20:28, 8:46] = True
    near = cv2.dilate(path.astype(np.uint8), np.ones((9, 9), np.uint8)).astype(bool)  # within 4 px
    params = PixelParams(background_rate_hz=0.0, hot_pixel_fraction=0.0, shot_noise_rate_hz=0.0, reference_spread=1.0)

    def away(glare):
        emulator = DvsEmulator(frames(glare)[0], 0, params, rng=3)
        events = emulator.run((1000 * k, f) for k, f in enumerate(frames(glare)[1:], start=1))
        return int((~near[events["y"], events["x"]]).sum())

    assert away(0.0) == 0
    assert away(0.3) > 20
