"""`python -m anode` runs the `anode` command."""

import sys

from .cli import main

sys.exit(main())
