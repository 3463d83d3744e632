"""`masnn classify --variants`: a clip played backwards and mirrored, against hand-written events and labels; the
variants' reports against those of files written with the same events; the card scoring each variant."""
from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from masnn.classify import Classifier, ClassifyOptions, classify_recording
from masnn.datasets.events import make_events
from masnn.datasets.io.readers import read_events
from masnn.datasets.io.writers import write_aedat4
from masnn.datasets.loaders.table import GESTURE_CLASSES, mirrored_labels
from masnn.datasets.synth.generator import write_action_clip
from masnn.training.card import real_block
from masnn.variants import VARIANTS, classify_variants, variant_events, variant_label

# what each variant of a right arm circled clockwise shows, written out by hand
RIGHT_ARM_CLOCKWISE = {"as recorded": "right arm clockwise", "backwards": "right arm counter-clockwise",
                       "mirrored": "left arm counter-clockwise", "mirrored backwards": "left arm clockwise"}


def test_mirrored_labels_swap_sides_and_reverse_circles():
    named = {GESTURE_CLASSES[a]: GESTURE_CLASSES[b] for a, b in mirrored_labels(GESTURE_CLASSES).items()}
    assert named == {"right hand wave": "left hand wave", "left hand wave": "right hand wave",
                     "right arm clockwise": "left arm counter-clockwise", "right arm counter-clockwise": "left arm clockwise",
                     "left arm clockwise": "right arm counter-clockwise", "left arm counter-clockwise": "right arm clockwise"}
    assert mirrored_labels([f"subject {i}" for i in range(20)]) == {}  # gait: a walker stays a walker


def test_each_variant_of_a_circle_and_a_clap_shows_its_class():
    circle, clap = GESTURE_CLASSES.index("right arm clockwise"), GESTURE_CLASSES.index("hand clap")
    for variant, shown in RIGHT_ARM_CLOCKWISE.items():
        assert GESTURE_CLASSES[variant_label(circle, variant, GESTURE_CLASSES)] == shown
        assert variant_label(clap, variant, GESTURE_CLASSES) == clap


def test_variant_events_equal_a_hand_written_loop():
    rng = np.random.default_rng(3)
    n, width = 500, 128
    t = np.sort(rng.integers(1_000_000, 2_000_000, n))
    events = make_events(rng.integers(0, width, n), rng.integers(0, 128, n), t, rng.integers(0, 2, n))
    first, last = int(t[0]), int(t[-1])
    by_hand = {"as recorded": [(x, y, t, p) for x, y, t, p in events.tolist()],
               "backwards": [(x, y, first + last - t, 1 - p) for x, y, t, p in reversed(events.tolist())],
               "mirrored": [(width - 1 - x, y, t, p) for x, y, t, p in events.tolist()],
               "mirrored backwards": [(width - 1 - x, y, first + last - t, 1 - p) for x, y, t, p in reversed(events.tolist())]}
    for variant in VARIANTS:
        made = variant_events(events, variant, width)
        assert made.dtype == events.dtype and made.tolist() == by_hand[variant], variant
    assert events.tolist()[0][2] == first  # the input is left as it was


def _same_prediction(ours: dict, written: dict) -> None:
    assert ours["prediction"] == written["prediction"]
    assert [w["stats"]["spikes"] for w in ours["windows"]] == [w["stats"]["spikes"] for w in written["windows"]]
    assert ours["recording"]["duration_s"] == pytest.approx(written["recording"]["duration_s"])


def test_variants_classify_as_files_written_with_the_variants_events(tmp_path, untrained_checkpoint):
    clip = tmp_path / "class04_right_arm_clockwise.aedat4"
    write_action_clip(clip, "right arm clockwise", seed=2, duration=1.5)
    events = read_events(clip)[0]
    classifier = Classifier.load(untrained_checkpoint, "cpu")
    options = ClassifyOptions(top_k=11)
    reports = classify_variants(clip, classifier, options)
    assert [r["variant"] for r in reports] == list(VARIANTS) and all(r["file"] == str(clip) for r in reports)
    for report, variant in zip(reports, VARIANTS):
        written = tmp_path / f"{variant.replace(' ', '_')}.aedat4"
        write_aedat4(written, variant_events(events, variant, 128), (128, 128))
        _same_prediction(report, classify_recording(written, classifier, options))

    # --start and --end choose the part whose variants are shown
    part = classify_variants(clip, classifier, ClassifyOptions(top_k=11, start_s=0.3, end_s=1.2))
    cut = events[(events["t"] >= events["t"][0] + 300_000) & (events["t"] < events["t"][0] + 1_200_000)]
    written = tmp_path / "part_backwards.aedat4"
    write_aedat4(written, variant_events(cut, "backwards", 128), (128, 128))
    _same_prediction(part[1], classify_recording(written, classifier, ClassifyOptions(top_k=11)))


def test_the_command_prints_a_line_per_variant_and_refuses_long_recordings(tmp_path, untrained_checkpoint):
    from test_classify import schema

    clip, long = tmp_path / "clip.aedat4", tmp_path / "long.aedat4"
    write_action_clip(clip, "hand clap", seed=1, duration=1.0)
    t = np.linspace(0, 9_000_000, 2000).astype(np.int64)
    write_aedat4(long, make_events(np.full(2000, 5), np.full(2000, 6), t, np.ones(2000)), (128, 128))
    masnn = [sys.executable, "-m", "masnn", "classify", "--weights", str(untrained_checkpoint), "--variants"]
    done = subprocess.run([*masnn, str(clip), "--json"], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    lines = [json.loads(line) for line in done.stdout.splitlines()]
    assert [line["variant"] for line in lines] == list(VARIANTS)
    import jsonschema

    for line in lines:
        jsonschema.validate(line, schema())

    refused = subprocess.run([*masnn, str(long), str(clip), "--format", "csv"], capture_output=True, text=True, timeout=300)
    assert refused.returncode == 2 and "Traceback" not in refused.stderr
    assert f"error: {long}: --variants takes a clip of at most 8 s, this is 9.0 s" in refused.stderr
    rows = refused.stdout.splitlines()[1:]  # the clip's variants are still classified, a row each
    assert [row.split(",")[0] for row in rows][-4:] == [f"{clip} ({variant})" for variant in VARIANTS]

    labels = subprocess.run([*masnn, str(clip), "--labels", str(tmp_path / "x.csv")], capture_output=True, text=True, timeout=300)
    assert labels.returncode == 2 and labels.stderr.strip() == "error: --labels: takes one recording (got --variants)"


def test_the_card_scores_each_variant_against_the_class_it_shows():
    def report(variant, named):
        top = [{"class": named, "index": GESTURE_CLASSES.index(named), "probability": 0.5}]
        return {"file": "real/class04_right_arm_clockwise.bs2", "variant": variant, "model": {"classes": GESTURE_CLASSES},
                "prediction": {"class": named, "confidence": 0.5, "top_k": top}}

    block = real_block([report("as recorded", "right arm clockwise"), report("backwards", "right arm clockwise"),
                        report("mirrored", "left arm counter-clockwise"), report("mirrored backwards", "left arm clockwise")])
    assert block.startswith("Named correctly: 3 of 4 labelled recordings and their variants (`masnn classify --variants`")
    assert "| `class04_right_arm_clockwise.bs2` (backwards) | right arm counter-clockwise | right arm clockwise | 0.50 | > 1 |" in block
    assert "| `class04_right_arm_clockwise.bs2` (mirrored backwards) | left arm clockwise | **left arm clockwise** |" in block
