"""Where numbers come from: one line naming the machine and the software versions."""

from __future__ import annotations

import os
import platform

import torch

from anode.version import __version__

__all__ = ["cpu_model", "machine_description", "provenance"]


def machine_description(device: str = "cpu") -> str:
    """One line naming the machine the numbers come from: the CPU's model and the vector instructions
    torch's kernels use (floating-point results on the CPU depend on both: an AMD EPYC and the Intel
    machine before it gave the same toy runs different last bits), the cores, the software versions."""
    line = (f"{platform.system()} {platform.machine()} ({cpu_model()}, torch kernels "
            f"{torch.backends.cpu.get_cpu_capability()}), {os.cpu_count()} CPU cores, "
            f"Python {platform.python_version()}, torch {torch.__version__}, anode {__version__}")
    if device.startswith("cuda") and torch.cuda.is_available():
        line += f", GPU {torch.cuda.get_device_name(0)}"
    return line


def cpu_model() -> str:
    """The CPU's model name (Linux: `/proc/cpuinfo`), else what `platform` knows of it."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            for line in fh:
                if line.lower().startswith(("model name", "hardware", "cpu model")):
                    return " ".join(line.split(":", 1)[1].split())
    except OSError:
        pass
    return platform.processor() or platform.machine()


def provenance(device: str = "cpu") -> dict[str, str]:
    """What a result records about where it was made: machine line, anode version, command line."""
    import sys

    return {"machine": machine_description(device), "anode_version": __version__, "command": " ".join(sys.argv)}
