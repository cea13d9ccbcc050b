"""What the user sees: the `xtui` command line (cli/) and the Textual app; imports engine, never the other way."""
