from pathlib import Path

import pytest

# Small real recordings live beside the checkout (../shared/data/real), never inside it.
REAL_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "real"


@pytest.fixture
def real_data() -> Path:
    if not REAL_DATA.is_dir():
        pytest.skip(f"real recordings not found at {REAL_DATA} (they sit beside the checkout, in shared/data/real)")
    return REAL_DATA


@pytest.fixture(scope="session")
def untrained_checkpoint(tmp_path_factory) -> Path:
    """A gesture-shaped checkpoint (3-layer TCSA, T = 20 x 45 ms, 11 named classes) with random weights whose
    BatchNorm gains are raised so that every layer spikes: for pipeline tests that need a model, not a good one."""
    import torch

    from masnn.datasets.motions import GESTURE_CLASSES
    from masnn.models import create_model
    from masnn.train import load_config, model_checkpoint, save_checkpoint

    torch.manual_seed(0)
    config = load_config(preset="gesture-cpu-small", overrides={"class_names": list(GESTURE_CLASSES)})
    model = create_model(config.model, **{k: v for k, v in config.model_args().items() if k != "name"})
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
                module.weight.mul_(4.0)
    path = tmp_path_factory.mktemp("weights") / "untrained.pt"
    save_checkpoint(model_checkpoint(model, config), path)
    return path
