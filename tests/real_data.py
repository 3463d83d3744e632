"""Where the small real recordings are: the folder named by $MASNN_REAL_DATA, else ../shared/data/real beside the
checkout (never inside it)."""
import os
from pathlib import Path

REAL_DATA_ENV = "MASNN_REAL_DATA"
DEFAULT_REAL_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "real"
REAL_DATA = Path(os.environ[REAL_DATA_ENV]).expanduser() if os.environ.get(REAL_DATA_ENV) else DEFAULT_REAL_DATA
