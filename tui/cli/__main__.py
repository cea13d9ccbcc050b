"""`python -m tui.cli`: the `xtui` command."""

import sys

from tui.cli import main

sys.exit(main())
