"""xtui's screens, one per module."""
