"""Shims between xtuner 0.2.0, mmengine 0.10 and the torch xtui runs on: what each needs to work together."""

from __future__ import annotations

import threading
from contextlib import contextmanager

# Said before xtui runs a run's config and unpickles its checkpoint (to resume it, or to convert it for chat).
TRUST_NOTE = (
    "that runs the run's config and unpickles the checkpoint: use only checkpoints you trust, such as your own runs'"
)
# A config line giving torch >= 2.14 the `torch.cpu.is_bf16_supported` that xtuner calls (a plain value: no import).
NO_BF16_ON_CPU = 'setattr(__import__("torch").cpu, "is_bf16_supported", lambda: False)'
# Runs an xtuner tool as `python -m` would, after giving torch the same function.
BOOT = (
    "import runpy, sys, torch\n"
    "if not hasattr(torch.cpu, 'is_bf16_supported'): torch.cpu.is_bf16_supported = lambda: False\n"
    "sys.argv = sys.argv[1:]\n"
    "runpy.run_module(sys.argv[0], run_name='__main__', alter_sys=True)\n"
)


def trusted_load_env() -> dict[str, str]:
    """The environment that lets mmengine unpickle a trusted checkpoint where torch (>= 2.6) loads weights-only."""
    from importlib import metadata

    try:
        major, minor = (int(p) for p in metadata.version("torch").split(".")[:2])
    except (metadata.PackageNotFoundError, ValueError):
        return {}
    return {"TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD": "1"} if (major, minor) >= (2, 6) else {}


_IMPORTING = threading.Lock()


@contextmanager
def importing_transformers():
    """Hold while importing from transformers or peft in a thread: their lazy modules fail when two threads import
    them at once (two screens' checks, or a check beside the chat's model loading)."""
    with _IMPORTING:
        yield
