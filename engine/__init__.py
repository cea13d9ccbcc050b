"""xtui's engine: drive XTuner runs and read them back, with no UI and no heavy imports."""
