"""xtui's widgets, one per module."""
