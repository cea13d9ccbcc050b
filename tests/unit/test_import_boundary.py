"""engine/ must load without the UI toolkit and without the heavy ML stack."""

import pkgutil
import subprocess
import sys
from pathlib import Path

import engine

HEAVY = ("textual", "rich", "torch", "transformers", "xtuner", "peft", "mmengine", "tokenizers")


def test_engine_modules_import_nothing_heavy() -> None:
    names = [m.name for m in pkgutil.walk_packages([str(Path(engine.__file__).parent)], prefix="engine.")]
    code = (
        "import importlib, sys\n"
        f"for name in {names!r}: importlib.import_module(name)\n"
        f"print(','.join(m for m in {HEAVY!r} if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert len(names) > 25
    assert out.stdout.strip() == ""
