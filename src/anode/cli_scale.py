"""Command-line pieces for running past one machine: the --backend/--address/--ray-* flags and `anode train`.

Kept apart from `cli.py` so that the flags can be added to any subcommand with one call.
"""

from __future__ import annotations

import argparse
import math
from typing import Any

__all__ = ["add_backend_flags", "add_train_parser", "backend_options"]


def _resource(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number >= 0 such as 1 or 0.5, got {text!r}") from None
    if not math.isfinite(value) or value < 0:
        raise argparse.ArgumentTypeError(f"expected a number >= 0 such as 1 or 0.5, got {text!r}")
    return value


def add_backend_flags(parser: argparse.ArgumentParser) -> None:
    """Add --backend, --address, --ray-cpus-per-run and --ray-gpus-per-run to `parser`.

    Arguments:
        parser: a subcommand's parser (its handler then passes `backend_options(args)` on).
    """
    group = parser.add_argument_group("where runs execute")
    group.add_argument("--backend", choices=("local", "ray"), default="local",
                       help="local: this machine (--jobs processes); ray: one Ray task per run (pip install 'anode[ray]')")
    group.add_argument("--address", default=None,
                       help="ray: join this running cluster (e.g. auto or HEAD:6379); default: start a local Ray "
                            "instance with --jobs CPUs. On several nodes --out must be on a shared file system")
    group.add_argument("--ray-cpus-per-run", type=_resource, default=1.0, help="ray: CPUs each run declares (default 1)")
    group.add_argument("--ray-gpus-per-run", type=_resource, default=0.0,
                       help="ray: GPUs each run declares (default 0; 0.5 puts two runs on one GPU)")


def backend_options(args: argparse.Namespace) -> dict[str, Any]:
    """`run_experiment` keywords (backend, address, resources) from parsed `add_backend_flags` flags.

    Arguments:
        args: the parsed arguments.

    Returns:
        The keywords; address and resources only when --backend ray.

    Raises:
        ValueError: --address or --ray-* flags given without --backend ray (the fix is named).
    """
    if args.backend != "ray":
        given = [flag for flag, value, default in (("--address", args.address, None), ("--ray-cpus-per-run", args.ray_cpus_per_run, 1.0),
                                                   ("--ray-gpus-per-run", args.ray_gpus_per_run, 0.0)) if value != default]
        if given:
            raise ValueError(f"{', '.join(given)} need --backend ray (got --backend {args.backend})")
        return {"backend": args.backend}
    return {"backend": "ray", "address": args.address,
            "resources": {"cpus": args.ray_cpus_per_run, "gpus": args.ray_gpus_per_run}}
