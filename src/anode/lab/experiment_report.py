"""`anode experiment`: run one experiment config, draw its figures and write its report.

Three steps, one function each: `run` (train, resuming finished runs), `draw_figures` (from the
saved results) and `write_experiment_report` (`report.md` and a self-contained `report.html`);
`run_and_report` chains them.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from anode.history import write_json
from anode.lab.claims import VERDICT_RULE, evaluate_claims
from anode.lab.experiments.config import ExperimentConfig
from anode.lab.experiments.figures import save_experiment_figures
from anode.lab.experiments.lock import locks_output
from anode.lab.experiments.runner import run_experiment
from anode.lab.report import Section, machine_description, run_counts, runs_line, write_report

__all__ = ["ExperimentOutcome", "draw_figures", "figure_sections", "results_listing", "run", "run_and_report",
           "summary_lines", "write_experiment_report"]


@dataclass(frozen=True)
class ExperimentOutcome:
    """What `run_and_report` produced.

    Attributes:
        out: the experiment folder.
        aggregate: the aggregate of the runs (also in `out/aggregate.json`).
        figures: the figure files drawn (empty with `figures=False` or when no run has a history).
        report: the path of `report.html`.
        failed: runs recorded as failed.
        finished: runs finished (completed or failed).
    """

    out: Path
    aggregate: dict[str, Any]
    figures: list[Path]
    report: Path
    failed: int
    finished: int


def run(config: ExperimentConfig, out_dir: str | os.PathLike[str], *, jobs: int = 1, device: str = "cpu",
        progress: bool = True, retry_failed: bool = False, fresh: bool = False,
        log: Callable[[str], None] | None = None, backend: str = "local", address: str | None = None,
        resources: dict[str, float] | None = None, together: int = 1) -> tuple[dict[str, Any], float]:
    """Train (or resume) every run of `config` into `out_dir`.

    Arguments:
        config: the experiment.
        out_dir: where results go.
        jobs, device, progress, retry_failed, fresh, log, backend, address, resources, together: as in
            `anode.lab.experiments.run_experiment`.

    Returns:
        (aggregate, wall time of this call in seconds).

    Raises:
        ValueError, FileNotFoundError, ConfigError: setup errors (see `run_experiment`).
    """
    started = time.perf_counter()
    aggregate = run_experiment(config, out_dir, jobs=jobs, device=device, progress=progress, retry_failed=retry_failed,
                               fresh=fresh, log=log, backend=backend, address=address, resources=resources,
                               together=together)
    return aggregate, time.perf_counter() - started


def draw_figures(out_dir: str | os.PathLike[str], *, gifs: bool = False) -> list[Path]:
    """Draw every figure the saved results support into `out_dir/figures/`.

    Returns:
        The files written (empty when no run has a history).
    """
    return save_experiment_figures(out_dir, gifs=gifs)


def figure_sections(figures: list[Path]) -> list[Section]:
    """One report section holding the experiment's figures, captioned by their key ("loss / spheres-2d").

    Arguments:
        figures: PNG/GIF files as written by `draw_figures` (named `<kind>__<dataset>[__<model>].png`).

    Returns:
        A list with one section, or no section when there are no figures.
    """
    if not figures:
        return []
    section = Section("Figures", "Drawn from the saved results (`anode plot OUT` redraws them); "
                                 "mean ± std across repeats where several repeats finished.")
    for path in sorted(figures):
        section.figures.append((path.stem.replace("__", " / "), path))
    return [section]


def summary_lines(config: ExperimentConfig, aggregate: dict[str, Any], *, command: str, device: str,
                  wall_time_s: float) -> list[str]:
    """The report's summary: command, config and budget, machine, wall time, runs finished/failed."""
    train = config.train
    budget = f"{config.repeats} repeat(s), {train.epochs} epoch(s) at batch {train.batch_size}" + (
        f", at most {train.max_iterations} iterations per run" if train.max_iterations is not None else "")
    return [
        f"Command: `{command}` (finished runs are reused; `--fresh` moves the folder aside and starts over)." if command
        else "Command: not recorded.",
        f"Config: {config.name}" + (f": {config.description}" if config.description else "") + ".",
        f"Budget: {budget}; training: {train.loss} loss, Adam lr {train.lr:g}, weight decay {train.weight_decay:g}.",
        "Models: " + "; ".join(f"{m.name} ({m.kind}, hidden {m.hidden_dim}, p = {m.augment_dim})" for m in config.models)
        + ". Datasets: " + ", ".join(d.name for d in config.datasets) + ".",
        (f"Solver: {config.solver.method}, rtol = {config.solver.rtol:g}, atol = {config.solver.atol:g}, "
         f"adjoint = {config.solver.adjoint}, backend {config.solver.backend}."),
        f"Machine: {machine_description(device)}.",
        f"Wall time of this invocation: {wall_time_s / 60:.1f} min.",
        runs_line({config.name: aggregate}),
    ]


def write_experiment_report(out_dir: str | os.PathLike[str], *, config: ExperimentConfig, aggregate: dict[str, Any],
                            figures: list[Path], command: str, device: str, wall_time_s: float) -> Path:
    """Write `report.md` and a self-contained `report.html` into `out_dir`, with the verdicts of the claims the
    config declares (`[[claims]]`, judged by `anode.lab.claims.evaluate_claims`; without any, the report says so).

    Returns:
        The path of `report.html`.
    """
    title = f"anode experiment: {config.name}"
    summary = summary_lines(config, aggregate, command=command, device=device, wall_time_s=wall_time_s)
    if config.claims:
        summary.append(f"Verdicts are computed from the numbers (anode.lab.claims). {VERDICT_RULE}")
    claims = evaluate_claims(config.claims, {config.name: config}, {config.name: aggregate})
    write_json(Path(out_dir) / "summary.json", {"experiment": config.name, "machine": machine_description(device),
                                               "claims": [c.to_dict() for c in claims], "aggregate": aggregate})
    _, html_path = write_report(out_dir, title=title, summary=summary, claims=claims, aggregates={config.name: aggregate},
                                sections=figure_sections(figures))
    return html_path


def results_listing(out_dir: str | os.PathLike[str]) -> str:
    """One line naming what the experiment folder holds, e.g. "results in OUT: report.html, ..., figures/ (12 files)".

    Only things that exist are named.
    """
    out = Path(out_dir)
    names = [name for name in ("report.html", "report.md", "aggregate.json", "experiment.json") if (out / name).is_file()]
    if (out / "runs").is_dir():
        names.append("runs/")
    figures = [p for p in (out / "figures").glob("*") if p.is_file()] if (out / "figures").is_dir() else []
    if figures:
        names.append(f"figures/ ({len(figures)} file{'s' if len(figures) != 1 else ''})")
    return f"results in {out}: " + (", ".join(names) if names else "nothing was written")


@locks_output("out_dir")
def run_and_report(config: ExperimentConfig, out_dir: str | os.PathLike[str], *, jobs: int = 1, device: str | None = None,
                   progress: bool = True, retry_failed: bool = False, fresh: bool = False, figures: bool = True,
                   gifs: bool = False, command: str = "", log: Callable[[str], None] | None = None,
                   backend: str = "local", address: str | None = None,
                   resources: dict[str, float] | None = None, together: int = 1) -> ExperimentOutcome:
    """Run an experiment, draw its figures and write its report; failed runs do not stop it.

    Arguments:
        config: the experiment.
        out_dir: where results, figures and the report go.
        jobs, progress, retry_failed, fresh, log, together: as in `anode.lab.experiments.run_experiment`.
        device: "cpu", "cuda", ... (None: CUDA when available).
        figures: draw figures (False: the report has no figure section).
        gifs: also write animated GIFs.
        command: the command line, quoted in the report.
        backend, address, resources: where runs execute (see `run_experiment`).

    Returns:
        An `ExperimentOutcome` with the counts of failed and finished runs.

    Raises:
        ValueError, FileNotFoundError, ConfigError: setup errors, raised before any run.
    """
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    out = Path(out_dir)
    aggregate, elapsed = run(config, out, jobs=jobs, device=device, progress=progress, retry_failed=retry_failed,
                             fresh=fresh, log=log, backend=backend, address=address, resources=resources,
                             together=together)
    drawn = draw_figures(out, gifs=gifs) if figures else []
    report = write_experiment_report(out, config=config, aggregate=aggregate, figures=drawn, command=command,
                                     device=device, wall_time_s=elapsed)
    failed, finished = run_counts({config.name: aggregate})
    return ExperimentOutcome(out, aggregate, drawn, report, failed, finished)
