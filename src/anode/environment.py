"""Where numbers come from: one line naming the machine and the software versions."""

from __future__ import annotations

import os
import platform

import torch

__all__ = ["machine_description", "provenance"]


def machine_description(device: str = "cpu") -> str:
    """One line naming the machine the numbers come from."""
    cpu = platform.processor() or platform.machine()
    line = f"{platform.system()} {platform.machine()} ({cpu}), {os.cpu_count()} CPU cores, Python {platform.python_version()}, torch {torch.__version__}, anode {_version()}"
    if device.startswith("cuda") and torch.cuda.is_available():
        line += f", GPU {torch.cuda.get_device_name(0)}"
    return line


def _version() -> str:
    from . import __version__

    return __version__


def provenance(device: str = "cpu") -> dict[str, str]:
    """What a result records about where it was made: machine line, anode version, command line."""
    import sys

    return {"machine": machine_description(device), "anode_version": _version(), "command": " ".join(sys.argv)}
