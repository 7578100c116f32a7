"""Command line: `anode experiment | train | plot | reproduce`. Parses arguments and calls the library."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from . import __version__

__all__ = ["main"]


def _config_path(value: str) -> Path:
    from .reproduce import builtin_config

    path = Path(value)
    return path if path.suffix in (".toml", ".json") or path.exists() else builtin_config(value)


def _int_list(text: str) -> tuple[int, ...]:
    try:
        values = tuple(int(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers such as 1,2,10, got {text!r}") from None
    if any(v < 1 for v in values):
        raise argparse.ArgumentTypeError(f"augment dims must be >= 1, got {text!r}")
    return values


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def _cmd_experiment(args: argparse.Namespace) -> int:
    from .experiments import load_config, run_experiment
    from .experiments.figures import save_experiment_figures

    cfg = load_config(_config_path(args.config))
    cfg = cfg.with_budget(repeats=args.repeats, epochs=args.epochs, max_iterations=args.max_iterations)
    if args.data_dir is not None:
        cfg = _with_data_dir(cfg, args.data_dir)
    run_experiment(cfg, args.out, jobs=args.jobs, device=args.device, progress=not args.no_progress,
                   retry_failed=args.retry_failed, **_backend_options(args))
    if not args.no_figures:
        save_experiment_figures(args.out)
    print(f"results in {args.out} (aggregate.json, runs/, figures/)")
    return 0


def _backend_options(args: argparse.Namespace) -> dict:
    """`run_experiment`'s backend keywords from the --backend/--address/--ray-* flags."""
    from .cli_scale import backend_options

    return backend_options(args)


def _with_data_dir(cfg, data_dir: str):  # type: ignore[no-untyped-def]
    import dataclasses

    from .experiments.config import ImageSpec

    datasets = tuple(dataclasses.replace(d, data_dir=data_dir) if isinstance(d, ImageSpec) else d for d in cfg.datasets)
    return dataclasses.replace(cfg, datasets=datasets)


def _cmd_plot(args: argparse.Namespace) -> int:
    from .experiments.figures import save_experiment_figures

    paths = save_experiment_figures(args.run_dir, args.out, gifs=args.gif)
    print(f"wrote {len(paths)} figures to {Path(args.out) if args.out else Path(args.run_dir) / 'figures'}")
    return 0


def _cmd_reproduce(args: argparse.Namespace) -> int:
    if args.suite == "toy":
        from .reproduce import reproduce_toy

        image_only = [flag for flag, value in (("--repeats", args.repeats), ("--epochs", args.epochs),
                                               ("--report-only", args.report_only)) if value]
        if image_only:
            raise ValueError(f"{', '.join(image_only)} apply to `reproduce images` only; the toy suite's size is "
                             "set by --budget (smoke, default, full)")

        budget = "full" if args.full else (args.budget or "default")
        path = reproduce_toy(args.out, budget=budget, jobs=args.jobs, progress=not args.no_progress, gifs=args.gif)
    else:
        from .reproduce_images import reproduce_images

        if args.dataset is None:
            raise ValueError("reproduce images needs --dataset (mnist, idx, cifar10, svhn or tinyimagenet)")
        budget = "paper" if args.full else (args.budget or "small")
        path = reproduce_images(args.out, dataset=args.dataset, data_dir=args.data_dir, budget=budget,
                                device=args.device, progress=not args.no_progress, sweep_p=args.sweep_p,
                                weight_decay=args.weight_decay, repeats=args.repeats, epochs=args.epochs,
                                jobs=args.jobs if args.jobs is not None else 1,
                                train=not args.report_only)
    print(f"report: {path} (and report.md beside it)")
    return 0


def _add_backend_flags(parser: argparse.ArgumentParser) -> None:
    from .cli_scale import add_backend_flags

    add_backend_flags(parser)


def _add_train_parser(sub) -> None:  # type: ignore[no-untyped-def]
    from .cli_scale import add_train_parser

    add_train_parser(sub)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the `anode` command."""
    parser = argparse.ArgumentParser(prog="anode", description="Augmented Neural ODEs: experiments, figures and reproduction reports.")
    parser.add_argument("--version", action="version", version=f"anode {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    exp = sub.add_parser("experiment", help="run one experiment config (models x datasets x repeats)")
    exp.add_argument("config", help="a .toml/.json file, or a built-in name such as toy/spheres or images/mnist")
    exp.add_argument("--out", required=True, help="output directory (rerunning resumes it)")
    exp.add_argument("--jobs", type=int, default=1, help="runs trained in parallel processes (CPU)")
    exp.add_argument("--device", default=None, help="cpu, cuda, ... (default: cuda when available)")
    exp.add_argument("--repeats", type=int, default=None, help="override the number of repeats")
    exp.add_argument("--epochs", type=int, default=None, help="override the number of epochs")
    exp.add_argument("--max-iterations", type=int, default=None, help="stop each run after this many iterations")
    exp.add_argument("--data-dir", default=None, help="where image data lives (overrides the config)")
    exp.add_argument("--retry-failed", action="store_true", help="rerun runs recorded as failed")
    exp.add_argument("--no-figures", action="store_true", help="do not draw figures at the end")
    exp.add_argument("--no-progress", action="store_true", help="no progress bars")
    _add_backend_flags(exp)
    exp.set_defaults(func=_cmd_experiment)

    _add_train_parser(sub)

    plot = sub.add_parser("plot", help="redraw all figures of an experiment directory from saved results")
    plot.add_argument("run_dir", help="directory written by `anode experiment`")
    plot.add_argument("--out", default=None, help="figure directory (default RUN_DIR/figures)")
    plot.add_argument("--gif", action="store_true", help="also write animated GIFs")
    plot.set_defaults(func=_cmd_plot)

    rep = sub.add_parser("reproduce", help="run a suite of the paper's experiments and write a report")
    rep.add_argument("suite", choices=("toy", "images"))
    rep.add_argument("--out", required=True, help="output directory (rerunning resumes it)")
    rep.add_argument("--budget", default=None, help="toy: default | full | smoke; images: small | paper | smoke")
    rep.add_argument("--full", action="store_true", help="the paper's settings (same as --budget full/paper)")
    rep.add_argument("--jobs", type=_positive_int, default=None,
                     help="runs trained at once (toy default: CPU cores; images default: 1, on a GPU they share the card)")
    rep.add_argument("--dataset", default=None, help="images: mnist | idx | cifar10 | svhn | tinyimagenet")
    rep.add_argument("--data-dir", default=None, help="images: data folder (or set ANODE_DATA_DIR)")
    rep.add_argument("--device", default=None, help="images: cpu, cuda, ... (default: cuda when available)")
    rep.add_argument("--sweep-p", type=_int_list, default=(), help="images: extra ANODE models with these augment dims, e.g. 1,2,10")
    rep.add_argument("--weight-decay", type=float, default=None, help="images: weight decay for every model")
    rep.add_argument("--repeats", type=_positive_int, default=None, help="images: override the budget's repeats")
    rep.add_argument("--epochs", type=_positive_int, default=None, help="images: override the budget's epochs")
    rep.add_argument("--report-only", action="store_true",
                     help="images: write the report from the runs already in --out (after a killed job); train nothing")
    rep.add_argument("--gif", action="store_true", help="toy: also write animated GIFs")
    rep.add_argument("--no-progress", action="store_true", help="no progress bars")
    rep.set_defaults(func=_cmd_reproduce)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `anode` console script; returns the exit status."""
    args = build_parser().parse_args(argv)
    import matplotlib

    matplotlib.use("Agg")
    from .experiments.schema import ConfigError

    try:
        return int(args.func(args))
    except (ConfigError, FileNotFoundError, ValueError) as err:
        print(f"anode: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("anode: interrupted; rerun the same command to resume", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
