from pathlib import Path

import pytest

# Small real recordings live beside the checkout (../shared/data/real), never inside it.
REAL_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "real"


@pytest.fixture
def real_data() -> Path:
    if not REAL_DATA.is_dir():
        pytest.skip(f"real recordings not found at {REAL_DATA} (they sit beside the checkout, in shared/data/real)")
    return REAL_DATA
