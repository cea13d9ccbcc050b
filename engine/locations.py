"""Every place xtui keeps files outside a work dir, and every XTUI_* variable that moves one."""

from __future__ import annotations

import os
from pathlib import Path

APP = "xtui"
CACHE_ENV = "XTUI_CACHE"  # converted checkpoints (default: the user cache folder)
DATA_ENV = "XTUI_DATA"  # saved transcripts (default: the user data folder)
CONFIG_ENV = "XTUI_CONFIG"  # the settings file itself (default: settings.json in the user config folder)
STATE_ENV = "XTUI_STATE"  # crash logs (default: the user state folder)
IMAGE_MODE_ENV = "XTUI_IMAGE_MODE"  # how images are drawn: halfblock | kitty | sixel | auto
GPU_CLAIMS_ENV = "XTUI_GPU_CLAIMS"  # GPU memory claimed by queued runs starting (default: xtui-gpu-claims in /tmp)


def _override(name: str) -> Path | None:
    """The folder an XTUI_* variable names, None when it is unset or empty."""
    value = os.environ.get(name)
    return Path(value) if value else None


def cache_dir() -> Path:
    """Where converted checkpoints are kept: $XTUI_CACHE, else the XDG cache folder's xtui/."""
    import platformdirs

    return _override(CACHE_ENV) or platformdirs.user_cache_path(APP)


def data_dir() -> Path:
    """Where what the user made in xtui is kept: $XTUI_DATA, else the XDG data folder's xtui/."""
    import platformdirs

    return _override(DATA_ENV) or platformdirs.user_data_path(APP)


def transcripts_dir() -> Path:
    """Where saved chats go."""
    return data_dir() / "transcripts"


def settings_file() -> Path:
    """The settings file: $XTUI_CONFIG (settings.json inside it when it names a folder), else settings.json in the
    XDG config folder's xtui/."""
    import platformdirs

    named = _override(CONFIG_ENV)
    if named is not None:
        return named / "settings.json" if named.is_dir() else named
    return platformdirs.user_config_path(APP) / "settings.json"


def crash_log_dir() -> Path:
    """Where the traceback of a bug is written: $XTUI_STATE, else the XDG state folder's xtui/."""
    import platformdirs

    return _override(STATE_ENV) or platformdirs.user_state_path(APP)


def gpu_claims_dir() -> Path:
    """Where queued runs that are starting claim GPU memory, for every user of the machine: $XTUI_GPU_CLAIMS, else
    xtui-gpu-claims in the temporary folder."""
    import tempfile

    return _override(GPU_CLAIMS_ENV) or Path(tempfile.gettempdir()) / "xtui-gpu-claims"
