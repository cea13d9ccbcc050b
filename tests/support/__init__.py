"""What the tests share: the repository's paths, fakes for what cannot run here, the tiny LLaVA builder, waiting helpers."""

from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = ROOT / "tests" / "fixtures"
FIXTURE_LOG = FIXTURES / "xtuner-0.2.0-h200-lora-console.log"
