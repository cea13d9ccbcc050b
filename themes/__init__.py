"""xtui themes (see issue #3)."""
