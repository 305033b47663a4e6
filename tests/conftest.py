from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
sys.path.insert(0, str(Path(__file__).parent))

ROOT = Path(__file__).resolve().parent.parent
SHARED_DATA = Path(os.environ.get("CASCADE_SHARED_DATA", ROOT.parent / "shared" / "data"))


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def shared_data() -> Path:
    if not (SHARED_DATA / "routerbench").is_dir():
        pytest.skip(f"recorded data not found at {SHARED_DATA} (set CASCADE_SHARED_DATA)")
    return SHARED_DATA
