"""Shared fixtures."""

from pathlib import Path

import pytest


@pytest.fixture
def ml100k_path() -> Path:
    """The shared ml-100k folder next to the repository; skips the test when it is absent."""
    path = Path(__file__).resolve().parents[1].parent / "shared/datasets/ml-100k"
    if not path.is_dir():
        pytest.skip(f"ml-100k not present at {path}")
    return path
