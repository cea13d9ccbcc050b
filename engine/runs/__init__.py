"""Runs: a work dir and its manifest, log reading, events, checkpoints, processes, launch, stop, resume; imports engine.xtuner and the base modules."""
