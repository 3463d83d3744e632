"""Where the small real recordings are: ../shared/data/real beside the checkout (never inside it)."""
from pathlib import Path

REAL_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "real"
