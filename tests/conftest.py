from pathlib import Path

import pytest
from real_data import DEFAULT_REAL_DATA, REAL_DATA, REAL_DATA_ENV


@pytest.fixture
def real_data() -> Path:
    if not REAL_DATA.is_dir():
        pytest.skip(f"real recordings not found at {REAL_DATA} (set {REAL_DATA_ENV} to their folder; "
                    f"by default they sit beside the checkout, in {DEFAULT_REAL_DATA})")
    return REAL_DATA


@pytest.fixture(scope="session")
def untrained_checkpoint(tmp_path_factory) -> Path:
    """A gesture-shaped checkpoint (3-layer TCSA, T = 20 x 45 ms, 11 named classes) with random weights whose
    BatchNorm gains are raised so that every layer spikes: for pipeline tests that need a model, not a good one."""
    from masnn.bench.live import untrained_checkpoint

    return untrained_checkpoint(tmp_path_factory.mktemp("weights"))


@pytest.fixture(scope="session")
def live_clip(tmp_path_factory):
    """A 2 s DVS128 gesture clip as AEDAT 4.0 and .npy, and its events (see live_helpers.write_clip)."""
    from live_helpers import write_clip

    return write_clip(tmp_path_factory.mktemp("live"))


@pytest.fixture(scope="session")
def live_classifier(untrained_checkpoint):
    """The untrained checkpoint with a 450 ms window: live tests need less stream before the first prediction."""
    from live_helpers import WINDOW_MS

    from masnn.classify import Classifier

    return Classifier.load(untrained_checkpoint, "cpu", window_ms=WINDOW_MS)


@pytest.fixture(scope="session")
def gesture_root(tmp_path_factory) -> Path:
    """A tiny synthetic DVS128 Gesture set (3 users, lab light, 0.6-0.8 s gestures, seed 7), made once for all
    the modules that read it; tests write their caches and copies elsewhere."""
    from masnn.datasets.synth.generator import GESTURE_PRESETS, write_gesture_dataset

    out = tmp_path_factory.mktemp("gesture")
    write_gesture_dataset(out, users=3, seed=7, preset=GESTURE_PRESETS["tiny"], workers=1)
    return out
