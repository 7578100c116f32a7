"""`python -m anode` runs the `anode` command."""

import sys

from anode.lab.cli import main

sys.exit(main())
