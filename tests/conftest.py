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


@pytest.fixture(scope="session", autouse=True)
def _private_caches(tmp_path_factory: pytest.TempPathFactory):
    """Lowered graphs and measured LUTs go to a per-session folder, never the user's ~/.cache/easrec.

    A test that passes only because an earlier run left a lowered graph in the user's cache would hide a
    broken lowering; within one session the cache is still shared, as it would be on a fresh CI machine.
    """
    root = tmp_path_factory.mktemp("easrec-cache")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("EASREC_CACHE", str(root))
        mp.setenv("EASREC_LUT_CACHE", str(root / "luts"))
        yield root
