"""The shipped models and sample recording: each loads as its card describes (same file hash, classes,
attention, framing), `masnn classify` with no argument names the sample's action, and the gesture model
recognises freshly generated clips it never saw and real DVS128 Gesture clips of people it never saw."""
from __future__ import annotations

import hashlib
import json
import re
import subprocess
import sys

import pytest

from masnn.classify import (
    SAMPLE_RECORDING,
    Classifier,
    ClassifyOptions,
    classify_recording,
    shipped_file,
    shipped_weights,
)
from masnn.datasets.loaders.table import GESTURE_CLASSES
from masnn.datasets.synth.generator import write_action_clip

SHIPPED = {"gesture-tcsa": ("TCS", 11), "gesture-vanilla": ("none", 11), "gait-tcsa": ("TCS", 20), "gait-vanilla": ("none", 20)}


@pytest.mark.parametrize("name", sorted(SHIPPED))
def test_shipped_model_is_the_one_its_card_describes(name):
    path = shipped_weights()[name]
    card = path.with_suffix(".md").read_text()
    assert hashlib.sha256(path.read_bytes()).hexdigest() in card  # the card was written for these very bytes
    classifier = Classifier.load(name, device="cpu")
    attention, classes = SHIPPED[name]
    assert classifier.model_args["attention"] == attention and len(classifier.class_names) == classes
    assert f"T = {classifier.framing.n_frames}" in card and f"dt = {classifier.framing.dt_us / 1000:g} ms" in card
    assert path.stat().st_size < 6_000_000  # float16 storage keeps git small


def test_classify_without_arguments_names_the_sample_action():
    result = subprocess.run([sys.executable, "-m", "masnn", "classify", "--json"], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    card = shipped_file("gesture-tcsa.md").read_text()
    action = re.search(r"sample recording shows \"([a-z -]+)\"", card).group(1)
    assert report["file"].endswith(SAMPLE_RECORDING) and report["mode"] == "clip"
    assert report["prediction"]["top_k"][0]["class"] == action


def test_gesture_model_recognises_new_generated_clips_of_each_class(tmp_path):
    classifier = Classifier.load("gesture-tcsa", device="cpu")
    right = []
    for index, action in enumerate(GESTURE_CLASSES):
        path = tmp_path / f"{index}.aedat4"
        write_action_clip(path, action, "dvs128", seed=1000 + index, duration=2.0, lighting="lab")
        report = classify_recording(path, classifier, ClassifyOptions())
        right.append(report["prediction"]["top_k"][0]["class"] == action)
    # chance is 1 in 11; measured 11 of 11
    assert sum(right) >= 8, right


# real DVS128 Gesture test-subject clips (the real-data folder's dvsgesture_bs2/); never trained on. The shipped
# default names all three (the arm circle 0.04 over its threshold); a clip it stops naming belongs in NOT_YET as an
# expected failure (strict: naming it again fails the mark, so the card and these lines get updated together)
REAL_CLIPS = {"class01_hand_clap.bs2": "hand clap", "class04_right_arm_clockwise.bs2": "right arm clockwise",
              "class09_air_drums.bs2": "air drums"}
NOT_YET: dict[str, str] = {}


@pytest.mark.parametrize("name", [pytest.param(n, marks=pytest.mark.xfail(reason=NOT_YET[n], strict=True)) if n in NOT_YET
                                  else n for n in sorted(REAL_CLIPS)])
def test_default_model_names_real_dvs128_gesture_clips(real_data, name):
    path = real_data / "dvsgesture_bs2" / name
    if not path.is_file():
        pytest.skip(f"{path} not found (the real .bs2 clips sit in dvsgesture_bs2/ of the real-data folder)")
    report = classify_recording(path, Classifier.load("gesture-tcsa", device="cpu"), ClassifyOptions())
    assert report["prediction"]["class"] == REAL_CLIPS[name], report["prediction"]["top_k"][:3]


# what each variant of those clips shows, by hand: played backwards, a circle's sense reverses; in a mirror, the
# arm and the sense both change; claps and drumming stay themselves. The default ranks every one's class first
# (the backwards circles' answer is "uncertain": 0.35 and 0.33, under its threshold of 0.39).
REAL_VARIANTS = {"class01_hand_clap.bs2": dict.fromkeys(("as recorded", "backwards", "mirrored", "mirrored backwards"), "hand clap"),
                 "class04_right_arm_clockwise.bs2": {"as recorded": "right arm clockwise", "backwards": "right arm counter-clockwise",
                                                     "mirrored": "left arm counter-clockwise", "mirrored backwards": "left arm clockwise"},
                 "class09_air_drums.bs2": dict.fromkeys(("as recorded", "backwards", "mirrored", "mirrored backwards"), "air drums")}


@pytest.mark.parametrize("name", sorted(REAL_VARIANTS))
def test_default_model_ranks_first_what_each_variant_of_the_real_clips_shows(real_data, name):
    from masnn.variants import classify_variants

    path = real_data / "dvsgesture_bs2" / name
    if not path.is_file():
        pytest.skip(f"{path} not found (the real .bs2 clips sit in dvsgesture_bs2/ of the real-data folder)")
    reports = classify_variants(path, Classifier.load("gesture-tcsa", device="cpu"))
    ranked_first = {r["variant"]: r["prediction"]["top_k"][0]["class"] for r in reports}
    assert ranked_first == REAL_VARIANTS[name]
