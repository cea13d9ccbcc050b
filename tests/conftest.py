"""What every test shares: xtui's own folders point into the test's tmp dir, and async tests run on asyncio."""

from __future__ import annotations

import pytest

from engine import locations


@pytest.fixture(autouse=True)
def private_locations(tmp_path_factory, monkeypatch):
    """No test reads or writes the user's ~/.cache, ~/.local or ~/.config; each sees fresh, empty folders."""
    home = tmp_path_factory.mktemp("xtui-home")
    places = ((locations.CACHE_ENV, "cache"), (locations.DATA_ENV, "data"), (locations.STATE_ENV, "state"),
              (locations.GPU_CLAIMS_ENV, "gpu-claims"))  # fmt: skip
    for name, folder in places:
        monkeypatch.setenv(name, str(home / folder))
    monkeypatch.setenv(locations.CONFIG_ENV, str(home / "settings.json"))
    return home


@pytest.fixture
def anyio_backend() -> str:
    """Textual's event loop: anyio would also run async tests on trio wherever trio is installed (gradio brings it)."""
    return "asyncio"
