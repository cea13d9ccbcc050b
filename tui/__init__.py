"""xtui Textual app (see issue #3)."""
