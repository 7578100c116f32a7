"""Command line: `anode experiment | train | plot | reproduce toy | reproduce images | reproduce cnf | compare | config-docs | table1`.

Parses arguments and calls the library. Exit status: 0 success; 1 the command finished (results and
report written) but some runs failed, or `compare` found verdicts that differ; 2 a usage or setup error (bad option, missing data, bad path,
invalid config, unknown name), reported before any run, or `plot` on a folder with nothing to draw;
130 interrupted.
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
from collections.abc import Sequence
from pathlib import Path

from anode.lab.cli.configs import config_path, with_data_dir
from anode.lab.cli.scale import add_backend_flags, add_train_parser, backend_options
from anode.version import __version__

__all__ = ["CNF_BUDGETS", "IMAGE_BUDGETS", "IMAGE_DATASETS", "IMAGE_EXPERIMENTS", "TOY_BUDGETS", "build_parser", "main"]

# Choices of the reproduce subcommands, kept here so that `--help` needs no torch import; a test
# checks them against the suite files and `anode.lab.reproduce.images`.
TOY_BUDGETS = ("smoke", "default", "full")
IMAGE_BUDGETS = ("smoke", "small", "paper")
CNF_BUDGETS = ("smoke", "default", "full")
IMAGE_DATASETS = ("mnist", "idx", "cifar10", "svhn", "tinyimagenet")
IMAGE_EXPERIMENTS = ("table1", "stability", "augmentation", "large_p", "weight_decay")

EXIT_RUNS_FAILED = 1
EXIT_SETUP_ERROR = 2


class _Formatter(argparse.HelpFormatter):
    """Help that shows each option's default, except for flags and options without one."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        default = action.default
        if "%(default)" in text or default in (None, False, argparse.SUPPRESS) or default == ():
            return text
        if action.option_strings and action.nargs != 0:
            text += " (default: %(default)s)"
        return text


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


def _out_dir(text: str) -> str:
    """An output folder: it may not exist yet, but it must not be a file."""
    path = Path(text)
    if path.exists() and not path.is_dir():
        raise argparse.ArgumentTypeError(f"{text!r} is a file, not a folder: give a new or existing folder")
    return text


# ----------------------------------------------------------------------------- results of a command


def _command_line(argv: Sequence[str]) -> str:
    """The command as typed (re-quoted), for reports and retry hints."""
    return shlex.join(["anode", *argv])


def _retry_command(argv: Sequence[str]) -> str:
    """The same command with `--retry-failed`, without `--fresh` (it would discard the results) and
    without `--report-only` (it trains nothing)."""
    args = [a for a in argv if a not in ("--fresh", "--report-only")]
    return _command_line(args if "--retry-failed" in args else [*args, "--retry-failed"])


def _exit_status(argv: Sequence[str], failed: int, finished: int) -> int:
    """0 when no run failed; otherwise print, as the last line, how many failed and how to retry, and return 1."""
    if not failed:
        return 0
    print(f"anode: {failed} of {finished} runs failed (the report and each run's result.json say why); "
          f"results and the report were written; to retry only the failed runs: {_retry_command(argv)}", file=sys.stderr)
    return EXIT_RUNS_FAILED


# ----------------------------------------------------------------------------- commands


def _cmd_experiment(args: argparse.Namespace) -> int:
    from anode.lab.experiment_report import results_listing, run_and_report
    from anode.lab.experiments import load_config

    cfg = load_config(config_path(args.config))
    cfg = cfg.with_budget(repeats=args.repeats, epochs=args.epochs, max_iterations=args.max_iterations)
    if args.data_dir is not None:
        cfg = with_data_dir(cfg, args.data_dir)
    outcome = run_and_report(cfg, args.out, jobs=args.jobs, device=args.device, progress=not args.no_progress,
                             retry_failed=args.retry_failed, fresh=args.fresh, figures=not args.no_figures,
                             together=args.together,
                             command=_command_line(args.argv), **backend_options(args))
    print(results_listing(args.out))
    return _exit_status(args.argv, outcome.failed, outcome.finished)


def _cmd_plot(args: argparse.Namespace) -> int:
    from anode.lab.experiments.figures import save_experiment_figures

    paths = save_experiment_figures(args.run_dir, args.out, gifs=args.gif)
    if not paths:
        print(f"anode: error: no figures could be drawn from {args.run_dir}: it has no finished run with a history "
              "(runs/<dataset>/<model>/seed-*/history.jsonl with at least one iteration). Run or resume it with "
              f"`anode experiment CONFIG --out {args.run_dir}` first", file=sys.stderr)
        return EXIT_SETUP_ERROR
    print(f"wrote {len(paths)} figures to {Path(args.out) if args.out else Path(args.run_dir) / 'figures'}")
    return 0


def _cmd_reproduce_toy(args: argparse.Namespace) -> int:
    from anode.lab.report import summary_run_counts
    from anode.lab.reproduce.toy import reproduce_toy

    budget = "full" if args.full else args.budget
    path = reproduce_toy(args.out, budget=budget, jobs=args.jobs, progress=not args.no_progress, gifs=args.gif,
                         together=args.together, fresh=args.fresh, retry_failed=args.retry_failed, **backend_options(args))
    print(f"report: {path} (and report.md beside it)")
    return _exit_status(args.argv, *summary_run_counts(args.out))


def _cmd_reproduce_cnf(args: argparse.Namespace) -> int:
    from anode.lab.report import summary_run_counts
    from anode.lab.reproduce.cnf import reproduce_cnf

    budget = "full" if args.full else args.budget
    path = reproduce_cnf(args.out, budget=budget, jobs=args.jobs, progress=not args.no_progress, fresh=args.fresh,
                         retry_failed=args.retry_failed)
    print(f"report: {path} (and report.md beside it)")
    return _exit_status(args.argv, *summary_run_counts(args.out))


def _cmd_reproduce_images(args: argparse.Namespace) -> int:
    from anode.lab.report import summary_run_counts
    from anode.lab.reproduce.images import reproduce_images

    budget = "paper" if args.full else args.budget
    path = reproduce_images(args.out, dataset=args.dataset, experiment=args.experiment, data_dir=args.data_dir, budget=budget,
                            device=args.device, progress=not args.no_progress, sweep_p=args.sweep_p, weight_decay=args.weight_decay,
                            repeats=args.repeats, epochs=args.epochs, jobs=args.jobs, train=not args.report_only,
                            fresh=args.fresh, retry_failed=args.retry_failed, **backend_options(args))
    print(f"report: {path} (and report.md beside it)")
    return _exit_status(args.argv, *summary_run_counts(args.out))


def _cmd_config_docs(args: argparse.Namespace) -> int:
    from anode.lab.docgen import config_reference

    text = config_reference()
    if args.out is None:
        sys.stdout.write(text)
    else:
        Path(args.out).write_text(text, encoding="utf-8")
        print(f"wrote {args.out}")
    return 0


def _cmd_compare(args: argparse.Namespace) -> int:
    from anode.lab.compare import compare_reports, format_comparison

    pairs, machines = compare_reports(args.first, args.second)
    sys.stdout.write(format_comparison(pairs, machines, (str(args.first), str(args.second))))
    return 0 if all(p.same for p in pairs) else 1


def _cmd_table1(args: argparse.Namespace) -> int:
    from anode.lab.table1 import pack_results, run_table1

    out = run_table1(args.dataset, results_dir=args.results, minutes=args.minutes, data_dir=args.data_dir,
                     config=args.config, device=args.device, progress=not args.no_progress)
    if args.pack:
        packed = pack_results(args.results, args.pack)
        print(f"packed {len(packed)} files into {args.pack}")
    print(f"report: {out['report']}")
    failed = out["aggregate"]["runs_failed"]
    if failed:
        print(f"{failed} of {out['aggregate']['runs_finished']} finished runs failed in the solver (they count as evidence)")
        return 1
    return 0


# ----------------------------------------------------------------------------- parser


def _add_run_options(p: argparse.ArgumentParser) -> None:
    """--fresh, --retry-failed and --no-progress, shared by the commands that train."""
    p.add_argument("--fresh", action="store_true",
                   help="move existing results in --out aside to <out>.old-<time> and start over")
    p.add_argument("--retry-failed", action="store_true", help="rerun the runs recorded as failed (others are reused)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")


def _add_experiment(sub: argparse._SubParsersAction) -> None:
    exp = sub.add_parser("experiment", help="run one experiment config (models x datasets x repeats) and write its report",
                         description="Run one experiment config, draw its figures and write report.md and report.html "
                                     "into --out. Rerunning resumes finished runs.", formatter_class=_Formatter)
    exp.add_argument("config", help="a .toml/.json file, or a built-in name such as toy/spheres or images/mnist")
    exp.add_argument("--out", required=True, type=_out_dir, help="output folder (rerunning resumes it)")
    exp.add_argument("--jobs", type=_positive_int, default=1, help="runs trained in parallel processes")
    exp.add_argument("--device", default=None, help="cpu, cuda, ... (default: cuda when available)")
    exp.add_argument("--repeats", type=int, default=None, help="override the config's number of repeats")
    exp.add_argument("--epochs", type=int, default=None, help="override the config's number of epochs")
    exp.add_argument("--max-iterations", type=int, default=None, help="stop each run after this many iterations")
    exp.add_argument("--data-dir", default=None, help="where image data lives (overrides the config)")
    exp.add_argument("--no-figures", action="store_true", help="draw no figures (the report then has none)")
    _add_together(exp, default=1)
    _add_run_options(exp)
    add_backend_flags(exp)
    exp.set_defaults(func=_cmd_experiment)


def _add_together(p: argparse.ArgumentParser, *, default: int | None) -> None:
    """--together N, shared by the commands that train experiments (None: the toy suite's default)."""
    shown = " (default: anode.lab.reproduce.toy.TOGETHER = 20)" if default is None else ""
    p.add_argument("--together", type=_positive_int, default=default,
                   help=f"train up to N runs of one model together as one stacked ensemble; 1: every run alone{shown}")


def _add_plot(sub: argparse._SubParsersAction) -> None:
    plot = sub.add_parser("plot", help="redraw all figures of an experiment folder from saved results",
                          formatter_class=_Formatter)
    plot.add_argument("run_dir", help="folder written by `anode experiment`")
    plot.add_argument("--out", default=None, help="figure folder (default: RUN_DIR/figures)")
    plot.add_argument("--gif", action="store_true", help="also write animated GIFs")
    plot.set_defaults(func=_cmd_plot)


def _add_reproduce_toy(sub: argparse._SubParsersAction) -> None:
    toy = sub.add_parser("toy", help="the paper's low-dimensional experiments, figures and claim verdicts",
                         description="Run the toy suite (resuming finished runs), draw every figure and write "
                                     "OUT/report.html and OUT/report.md with a verdict per claim.",
                         formatter_class=_Formatter)
    toy.add_argument("--out", required=True, type=_out_dir, help="output folder (rerunning resumes it)")
    size = toy.add_mutually_exclusive_group()
    size.add_argument("--budget", choices=TOY_BUDGETS, default="default",
                      help="default: reduced budget for 2 CPU cores; full: the paper's settings; smoke: seconds, for tests")
    size.add_argument("--full", action="store_true", help="the paper's settings (same as --budget full)")
    toy.add_argument("--jobs", type=_positive_int, default=None,
                     help="runs trained at once in worker processes (default: the number of CPU cores)")
    toy.add_argument("--gif", action="store_true", help="also write animated GIFs")
    _add_together(toy, default=None)
    _add_run_options(toy)
    add_backend_flags(toy)
    toy.set_defaults(func=_cmd_reproduce_toy)


def _add_reproduce_cnf(sub: argparse._SubParsersAction) -> None:
    cnf = sub.add_parser("cnf", help="CNF vs augmented CNF on 2-D densities (the paper's Sec. 6 conjecture)",
                         description="Train a CNF, augmented CNFs (p = 1, 2; q = N(0, I) or learned) and a regularised CNF "
                                     "on 2-D densities (resuming finished runs), draw the figures and write OUT/report.html "
                                     "and OUT/report.md with a verdict per claim (configs/cnf/).",
                         formatter_class=_Formatter)
    cnf.add_argument("--out", required=True, type=_out_dir, help="output folder (rerunning resumes it)")
    size = cnf.add_mutually_exclusive_group()
    size.add_argument("--budget", choices=CNF_BUDGETS, default="default",
                      help="default: 3 repeats, about 4 min on 2 CPU cores; full: 6 repeats x 1,000 iterations "
                           "(about 27 min on 2 CPU cores); smoke: seconds, for tests")
    size.add_argument("--full", action="store_true", help="more repeats and iterations (same as --budget full)")
    cnf.add_argument("--jobs", type=_positive_int, default=None,
                     help="runs trained at once in worker processes (default: the number of CPU cores)")
    _add_run_options(cnf)
    cnf.set_defaults(func=_cmd_reproduce_cnf)


def _add_reproduce_images(sub: argparse._SubParsersAction) -> None:
    img = sub.add_parser("images", help="NODE vs ANODE on image data: Table 1's models, or one claim experiment",
                         description="Train NODE and ANODE on an image dataset (--experiment table1, Table 1's "
                                     "parameter-matched models), or one claim experiment on MNIST (stability when "
                                     "overfitting, the augmentation sweep, too large p, weight decay), and write "
                                     "OUT/report.html and OUT/report.md with figures and claim verdicts (see docs/images.md).",
                         formatter_class=_Formatter)
    img.add_argument("--experiment", choices=IMAGE_EXPERIMENTS, default="table1",
                     help="table1: NODE vs ANODE on --dataset; the others: a claim experiment (configs/images/NAME.toml)")
    img.add_argument("--dataset", choices=IMAGE_DATASETS, default=None,
                     help="which dataset (required for table1; a claim experiment runs on MNIST unless given)")
    img.add_argument("--out", required=True, type=_out_dir, help="output folder (rerunning resumes it)")
    img.add_argument("--data-dir", default=None, help="data folder (default: $ANODE_DATA_DIR)")
    size = img.add_mutually_exclusive_group()
    size.add_argument("--budget", choices=IMAGE_BUDGETS, default="small",
                      help="small: CPU budget; paper: Table 1's protocol, or a claim experiment's GPU protocol "
                           "(one H100 window); smoke: seconds, for tests")
    size.add_argument("--full", action="store_true", help="Table 1's protocol (same as --budget paper)")
    img.add_argument("--device", default=None, help="cpu, cuda, ... (default: cuda when available)")
    img.add_argument("--sweep-p", type=_int_list, default=(), help="extra ANODE models with these augment dims, e.g. 1,2,10")
    img.add_argument("--weight-decay", type=float, default=None, help="weight decay for every model (default: the config's)")
    img.add_argument("--repeats", type=_positive_int, default=None, help="override the budget's repeats")
    img.add_argument("--epochs", type=_positive_int, default=None, help="override the budget's epochs")
    img.add_argument("--jobs", type=_positive_int, default=1,
                     help="runs trained at once; on a GPU they share the card")
    img.add_argument("--report-only", action="store_true",
                     help="write the report from the runs already in --out (after a killed job); train nothing")
    _add_run_options(img)
    add_backend_flags(img)
    def check(args: argparse.Namespace) -> None:
        if args.experiment == "table1" and args.dataset is None:
            img.error("the following arguments are required: --dataset (with --experiment table1, the default)")
        if not args.report_only:
            _require_data_dir(img, args)

    img.set_defaults(func=_cmd_reproduce_images, usage_check=check)


def _require_data_dir(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """A usage error (exit 2) naming the flag when no data folder is given and ANODE_DATA_DIR is not set."""
    if args.data_dir is None and not os.environ.get("ANODE_DATA_DIR"):
        parser.error("no data folder: pass --data-dir DIR (the folder holding mnist/, cifar10/, svhn/ or "
                     "tiny-imagenet/, e.g. ../shared/data) or set the environment variable ANODE_DATA_DIR")


def _add_table1(sub: argparse._SubParsersAction) -> None:
    t1 = sub.add_parser("table1", help="add the next Table 1 runs that fit a time window to an accumulating results folder",
                        description="Continue the Table 1 run in progress (the authors' protocol), train the missing runs "
                                    "that fit --minutes whole, rewrite RESULTS/<dataset>/report.md, then train one more run "
                                    "until the minutes are spent; it resumes from its checkpoint next time "
                                    "(see docs/results/README.md).",
                        formatter_class=_Formatter)
    t1.add_argument("--dataset", required=True, help="mnist | cifar10 | svhn (the built-in image configs)")
    t1.add_argument("--minutes", type=float, required=True,
                    help="time this call may use, the probe included: whole runs, then one run stopped on time that resumes next time")
    t1.add_argument("--data-dir", default=None, help="data folder (default: $ANODE_DATA_DIR)")
    t1.add_argument("--results", default="docs/results/table1", help="the accumulating folder")
    t1.add_argument("--config", default=None, help="a config file instead of the built-in one (e.g. a tiny stand-in)")
    t1.add_argument("--device", default=None, help="cpu, cuda, ... (default: cuda when available)")
    t1.add_argument("--pack", default=None,
                    help="then write a .tgz of exactly what to commit (finished runs, a run in progress with its checkpoint)")
    t1.add_argument("--no-progress", action="store_true", help="no progress bars")
    t1.set_defaults(func=_cmd_table1, usage_check=lambda args: None if args.config is not None else _require_data_dir(t1, args))


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the `anode` command."""
    parser = argparse.ArgumentParser(prog="anode", description="Augmented Neural ODEs: experiments, figures and "
                                     "reproduction reports.\n\nExit status: 0 success; 1 some runs failed (results and "
                                     "report still written); 2 usage or setup error, or nothing to plot; 130 interrupted.",
                                     formatter_class=_Formatter)
    parser.add_argument("--version", action="version", version=f"anode {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    _add_experiment(sub)
    add_train_parser(sub)
    _add_plot(sub)
    rep = sub.add_parser("reproduce", help="run a suite of the paper's experiments and write a report (toy | images | cnf)",
                         formatter_class=_Formatter)
    suites = rep.add_subparsers(dest="suite", required=True, metavar="{toy,images,cnf}")
    _add_reproduce_toy(suites)
    _add_reproduce_images(suites)
    _add_reproduce_cnf(suites)
    docs = sub.add_parser("config-docs", help="print the config file reference (docs/config.md) generated from the schema",
                          formatter_class=_Formatter)
    docs.add_argument("--out", default=None, help="write it to this file instead of standard output")
    docs.set_defaults(func=_cmd_config_docs)
    cmp = sub.add_parser("compare", help="two reports' verdicts side by side (exit 1 when any differs)",
                         description="Each claim's verdict and test statistic in two report folders written by "
                                     "`anode reproduce` (e.g. a rerun on another machine against docs/results/toy). "
                                     "Exit status 0 when every verdict agrees, 1 when some differ, 2 when a folder "
                                     "holds no report.", formatter_class=_Formatter)
    cmp.add_argument("first", type=Path, help="a report folder (with summary.json)")
    cmp.add_argument("second", type=Path, help="the report folder to compare it with")
    cmp.set_defaults(func=_cmd_compare)
    _add_table1(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `anode` console script.

    Arguments:
        argv: the arguments (default: `sys.argv[1:]`).

    Returns:
        The exit status: 0, 1 (runs failed), 2 (usage or setup error; nothing to plot) or 130 (interrupted).
        Usage errors found by the parser raise `SystemExit(2)` as argparse does.
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    if getattr(args, "usage_check", None) is not None:
        args.usage_check(args)  # a usage error the parser alone cannot see (exits with status 2)
    args.argv = argv
    import matplotlib

    matplotlib.use("Agg")
    from anode.lab.experiments.schema import ConfigError

    try:
        return int(args.func(args))
    except (ConfigError, OSError, ValueError) as err:
        print(f"anode: error: {err}", file=sys.stderr)
        return EXIT_SETUP_ERROR
    except KeyboardInterrupt:
        print("anode: interrupted; rerun the same command to resume", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
