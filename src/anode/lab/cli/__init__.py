"""The `anode` command line: `main` parses arguments and calls the lab (`anode.lab.cli.commands`);
`anode.lab.cli.scale` adds the execution backends and `anode train` (torchrun)."""

from anode.lab.cli.commands import build_parser as build_parser
from anode.lab.cli.commands import main as main

__all__ = ["build_parser", "main"]
