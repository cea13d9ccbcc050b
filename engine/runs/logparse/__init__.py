"""The parts of the mmengine log parser: lines, train steps, samples, failures, the run's setup, scalars.json."""
