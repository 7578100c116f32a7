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
    group.add_argument("--ray-cpus-per-run", type=_resource, default=1.0, help="ray: CPUs each run declares")
    group.add_argument("--ray-gpus-per-run", type=_resource, default=0.0,
                       help="ray: GPUs each run declares (0.5 puts two runs on one GPU)")


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


def add_train_parser(sub: Any) -> None:
    """Add the `train` subcommand (one run; data-parallel under torchrun) to the subparsers `sub`.

    Arguments:
        sub: the object returned by `ArgumentParser.add_subparsers`.
    """
    train = sub.add_parser(
        "train", help="train ONE run of a config; under `torchrun --nproc-per-node N` data-parallel (DDP)",
        description="Train one run (model x dataset x repeat) of an experiment config into --out. Launched by "
                    "torchrun it trains with DistributedDataParallel: each rank takes its shard of the same global "
                    "batch, gradients are averaged, rank 0 writes; rerunning resumes from --out/checkpoint.pt. "
                    "NFE is per shard (the history records the mean and max over ranks).")
    train.add_argument("config", help="a .toml/.json file, or a built-in name such as images/mnist")
    train.add_argument("--out", required=True, help="the run folder (rerunning resumes it)")
    train.add_argument("--model", default=None, help="model name (needed when the config has several)")
    train.add_argument("--dataset", default=None, help="dataset name (needed when the config has several)")
    train.add_argument("--repeat", type=int, default=0, help="which repeat's seed")
    train.add_argument("--epochs", type=int, default=None, help="override the number of epochs")
    train.add_argument("--max-iterations", type=int, default=None, help="stop after this many iterations")
    train.add_argument("--device", default=None, help="cpu or cuda (default: cuda when available; rank r uses cuda:LOCAL_RANK)")
    train.add_argument("--data-dir", default=None, help="where image data lives (overrides the config)")
    train.add_argument("--no-progress", action="store_true", help="no progress bars")
    train.set_defaults(func=_cmd_train)


def _cmd_train(args: argparse.Namespace) -> int:
    from anode.lab.cli.configs import config_path, with_data_dir
    from anode.lab.distributed import train_run
    from anode.lab.experiments import load_config
    from anode.training.distributed import dist_env

    cfg = load_config(config_path(args.config))
    cfg = cfg.with_budget(epochs=args.epochs, max_iterations=args.max_iterations)
    if args.data_dir is not None:
        cfg = with_data_dir(cfg, args.data_dir)
    result = train_run(cfg, args.out, model=args.model, dataset=args.dataset, repeat=args.repeat, device=args.device,
                       progress=not args.no_progress)
    rank, world, _ = dist_env()
    if rank == 0:
        print(f"trained {result['model']} on {result['dataset']} with {world} process(es): {result['iterations']} "
              f"iterations, final loss {result['final_loss']:.4f}; results in {args.out}")
    return 0
