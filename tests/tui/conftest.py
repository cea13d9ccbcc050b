"""Pilot tests run on asyncio, Textual's event loop (anyio would also run them on trio wherever trio is installed)."""

import pytest


@pytest.fixture
def anyio_backend() -> str:
    """The one backend Textual runs on."""
    return "asyncio"
