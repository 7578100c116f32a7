"""`anode reproduce toy`: run the low-dimensional suite and write the claim-by-claim report."""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from importlib import resources
from pathlib import Path
from typing import Any

import tomllib

from anode.history import write_json
from anode.lab.claims import VERDICT_RULE, check_claims, evaluate_claims, load_claims
from anode.lab.experiments.backends import open_backend
from anode.lab.experiments.config import ExperimentConfig, load_config
from anode.lab.experiments.figures import save_experiment_figures
from anode.lab.experiments.lock import locks_output
from anode.lab.experiments.runner import move_aside
from anode.lab.experiments.schema import ConfigError
from anode.lab.experiments.suite import run_suite
from anode.lab.report import Section, machine_description, runs_line, write_report

__all__ = ["BUDGET_KEYS", "TOGETHER", "builtin_config", "check_budget_keys", "load_suite", "read_budget", "reproduce_toy"]

BUDGET_KEYS = ("repeats", "epochs", "max_iterations")
#: Runs of one model trained together as a stacked ensemble by default (the paper's 20 repeats fit one group).
TOGETHER = 20
#: Files of a suite folder that are not experiment configs.
SUITE_FILES = ("suite", "claims")


def builtin_config(name: str) -> Path:
    """Path of a config shipped with anode, e.g. "toy/spheres" or "images/mnist".

    Raises:
        FileNotFoundError: no such built-in config (the message lists them).
    """
    root = Path(str(resources.files("anode.lab") / "configs"))
    path = root / f"{name}.toml"
    if not path.exists():
        known = sorted(str(p.relative_to(root).with_suffix("")) for p in root.glob("*/*.toml") if p.stem not in SUITE_FILES)
        raise FileNotFoundError(f"no built-in config {name!r}; built-in configs: {known}")
    return path


def read_budget(kind: str, budget: str) -> tuple[dict[str, Any], dict[str, Any], str]:
    """The suite file of `kind` ("toy" or "images") and its `budget` table: (suite, table, note).

    Raises:
        ConfigError: unknown budget (the valid ones are listed).
    """
    suite = tomllib.loads(builtin_config(f"{kind}/suite").read_text(encoding="utf-8"))
    budgets = suite.get("budgets", {})
    if budget not in budgets:
        raise ConfigError(f"unknown budget {budget!r}; valid choices: {sorted(budgets)}")
    table = dict(budgets[budget])
    return suite, table, str(table.pop("note", budget))


def check_budget_keys(where: str, table: dict[str, Any], allowed: tuple[str, ...]) -> None:
    """Reject a budget table with keys outside `allowed`, naming the first one.

    Raises:
        ConfigError: an unknown key.
    """
    bad = sorted(set(table) - set(allowed))
    if bad:
        raise ConfigError(f"{where}: unknown key {bad[0]!r}; valid keys: {list(allowed)}")


def load_suite(kind: str, budget: str) -> tuple[dict[str, Any], list[ExperimentConfig], str]:
    """The suite's experiments with `budget` applied: (suite table, configs, budget note).

    Raises:
        ConfigError: unknown budget (choices listed) or a malformed suite file.
    """
    suite, table, note = read_budget(kind, budget)
    configs = []
    for name in suite["experiments"]:
        overrides = table.pop(name, {})
        check_budget_keys(f"budgets.{budget}.{name}", overrides, BUDGET_KEYS)
        configs.append(load_config(builtin_config(f"{kind}/{name}")).with_budget(**overrides))
    if table:
        raise ConfigError(f"budgets.{budget} names unknown experiments {sorted(table)}; experiments: {suite['experiments']}")
    return suite, configs, note


# Figures of the report: (experiment, figure key, caption), grouped by the paper's figures.
_SECTIONS: list[tuple[str, str, list[tuple[str, str, str]]]] = [
    ("Section 3 / Fig. 3: the flow alone on the identity and on g1d",
     "The flow of an ODE preserves order in 1-D: the NODE's trajectories from -1 and +1 cannot cross, so it cannot map x to -x. "
     "One augmented dimension lets them pass each other.",
     [("flow_g1d", "flow/identity/node", "NODE flow, identity map"), ("flow_g1d", "flow/g1d/node", "NODE flow, g1d (cannot cross)"),
      ("flow_g1d", "field/g1d/node", "NODE vector field on g1d"), ("flow_g1d", "flow/g1d/anode-p-1", "ANODE (p=1) flow on g1d in R^2"),
      ("flow_g1d", "loss/g1d", "MSE on g1d")]),
    ("Section 4.1 / Fig. 5: ResNet vs NODE",
     "Training loss (mean ± std across repeats) on g(x) in d = 1 and 2 and on the separable shifted sines.",
     [("spheres", "loss/spheres-1d", "g(x), d = 1"), ("spheres", "loss/spheres-2d", "g(x), d = 2"),
      ("spheres", "loss/sines-2d", "shifted sines, d = 2")]),
    ("Section 5.1 / Fig. 7: flows learned by NODE and ANODE",
     "Trajectories of training points from t = 0 (hollow) to t = 1 (filled).",
     [("spheres", "flow/spheres-1d/node", "NODE, d = 1"), ("spheres", "flow/spheres-1d/anode-p-1", "ANODE, d = 1 + 1"),
      ("spheres", "flow/spheres-2d/node", "NODE, d = 2"), ("spheres", "flow/spheres-2d/anode-p-1", "ANODE, d = 2 + 1")]),
    ("Fig. 8: NFE during training and the evolution of the features",
     "Forward NFE per iteration (mean ± std across repeats), NFE against loss, and the features h(1) at snapshots during training.",
     [("spheres", "nfe/spheres-1d", "forward NFE, d = 1"), ("spheres", "nfe/spheres-2d", "forward NFE, d = 2"),
      ("spheres", "nfe_vs_loss/spheres-2d", "NFE vs loss, d = 2"), ("spheres", "features/spheres-2d/node", "NODE features during training"),
      ("spheres", "features/spheres-2d/anode-p-1", "ANODE features during training")]),
    ("Fig. 9: generalisation to the held-out slice [0, pi/5]",
     "Model output over the input plane (x right, y up); hollow black circles are the held-out points, never seen in training.",
     [("generalisation", "map/spheres-2d-slice-held-out/node", "NODE"),
      ("generalisation", "map/spheres-2d-slice-held-out/anode-p-1", "ANODE (p=1)"),
      ("generalisation", "eval_loss/spheres-2d-slice-held-out", "held-out loss per epoch")]),
    ("Weight decay x augmentation",
     "Forward NFE and loss of NODE and ANODE with and without weight decay (1e-3) on g(x), d = 2.",
     [("weight_decay", "nfe/spheres-2d", "forward NFE"), ("weight_decay", "loss/spheres-2d", "training loss")]),
    ("How much augmentation: p = 0, 1, 2, 5",
     "Training loss and forward NFE of NODE and ANODE with p = 1, 2, 5 on g(x), d = 2.",
     [("augmentation", "loss/spheres-2d", "training loss"), ("augmentation", "nfe/spheres-2d", "forward NFE")]),
    ("Beyond the paper: learned and second-order augmentation, kinetic-energy regularisation",
     "Zero augmentation (the paper) against learned augmentation (Massaroli et al., 2020) and second-order dynamics "
     "(SONODE, Norcliffe et al., 2020) at matched parameter counts, and the zero-augmented ANODE with a kinetic-energy "
     "regulariser of weight 0.01 (Finlay et al., 2020); p = d. On g1d the flow alone, on g(x) in d = 2 with a readout. "
     "3 repeats each (fewer than the rest of the report, to keep its time).",
     [("beyond_g1d", "loss/g1d", "g1d: MSE"), ("beyond_g1d", "nfe/g1d", "g1d: forward NFE"),
      ("beyond_g1d", "flow/g1d/sonode-p-1", "SONODE flow on g1d: x passes -x with its velocity"),
      ("beyond_spheres", "loss/spheres-2d", "g(x), d = 2: training loss"),
      ("beyond_spheres", "nfe/spheres-2d", "g(x), d = 2: forward NFE")]),
]


@locks_output("out_dir")
def reproduce_toy(
    out_dir: str | os.PathLike[str],
    *,
    budget: str = "default",
    jobs: int | None = None,
    progress: bool = True,
    gifs: bool = False,
    fresh: bool = False,
    retry_failed: bool = False,
    log: Callable[[str], None] | None = None,
    backend: str = "local",
    address: str | None = None,
    resources: dict[str, float] | None = None,
    together: int | None = None,
) -> Path:
    """Run the toy suite (resuming finished runs), draw every figure and write the report.

    Arguments:
        out_dir: results go to `out_dir/<experiment>/`; the report to `out_dir/report.{md,html}`
            with its figures in `out_dir/figures/`.
        budget: "default": under 2 minutes on 2 CPU cores (82 to 113 s in thirteen runs on 2026-11-28 as the machine's speed varied,
            beyond-the-paper section included; side by side, 0.86 to 0.91 of the time of the code before);
            "full": the paper's settings (12.9 min on 2 CPU cores, stacked, on 2026-11-27; 11.6 min on 2026-11-28);
            "smoke": seconds, for tests.
        jobs: parallel training processes (default: the number of CPU cores).
        progress: progress bars and per-run summaries.
        gifs: also write animated GIFs of flows and feature evolution.
        fresh: move the previous `out_dir` aside to `<out_dir>.old-<YYYYmmdd-HHMMSS>` and start afresh.
        retry_failed: rerun the runs recorded as failed instead of reusing them.
        log: where one-line messages go.
        backend, address, resources: where the runs execute (see `run_experiment`); with "ray"
            one Ray instance (or cluster connection) serves the whole suite.
        together: train up to this many runs of one model together as a stacked ensemble (see
            `run_experiment`; None: `TOGETHER`); 1 trains every run alone.

    Returns:
        The path of `report.html`.
    """
    out = Path(out_dir)
    suite, configs, note = load_suite("toy", budget)
    claim_specs = load_claims(builtin_config("toy/claims"))
    names = {cfg.name for cfg in configs}
    check_claims([c for c in claim_specs if c.experiment in names], {cfg.name: cfg for cfg in configs})
    jobs = jobs or max(os.cpu_count() or 1, 1)
    together = TOGETHER if together is None else together
    started = time.perf_counter()
    if fresh:
        moved = move_aside(out)
        if moved is not None:
            (log or print)(f"--fresh: moved the previous results in {out} aside to {moved}")
    executor, owned = open_backend(backend, jobs=jobs, address=address, resources=resources)
    # One schedule for the whole suite (runs with equal fingerprints in several experiments train
    # once); each experiment's figures are drawn in this process as soon as its last run ends, while
    # the workers train the others (one drawing thread: matplotlib is not thread-safe).
    with ThreadPoolExecutor(max_workers=1) as figure_thread:
        try:
            drawn = []

            def draw(cfg: ExperimentConfig, _aggregate: dict[str, Any]) -> None:
                drawn.append(figure_thread.submit(save_experiment_figures, out / cfg.name, gifs=gifs))

            aggregates = run_suite(configs, out, executor=executor, progress=progress, retry_failed=retry_failed,
                                   log=log, together=together, on_finished=draw)
            for future in drawn:
                future.result()
        finally:
            if owned:
                executor.__exit__(None, None, None)
    elapsed = time.perf_counter() - started
    claims = evaluate_claims(claim_specs, {cfg.name: cfg for cfg in configs}, aggregates)
    sections = []
    for title, text, figs in _SECTIONS:
        section = Section(title, text)
        for exp, key, caption in figs:
            src = out / exp / "figures" / (key.replace("/", "__") + ".png")
            if src.exists():
                dst = out / "figures" / f"{exp}__{src.name}"
                dst.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(src, dst)
                section.figures.append((caption, dst))
        sections.append(section)
    cmd = f"anode reproduce toy --out {out}" + ("" if budget == "default" else f" --budget {budget}")
    summary = [
        f"Command: `{cmd}` (finished runs are reused; `--fresh` moves them aside and starts afresh).",
        f"Budget: {budget}: {note}. Seeds: data from seed 0, repeat r uses seed r for weights and batch order.",
        "Solver: " + "; ".join(sorted({f"{c.solver.method}, rtol = {c.solver.rtol:g}, atol = {c.solver.atol:g}, adjoint = "
                                       f"{c.solver.adjoint}, backend {c.solver.backend}" for c in configs})) + ".",
        f"Machine: {machine_description()}; {jobs} parallel run(s); "
        + (f"up to {together} runs of one model trained together as a stacked ensemble (anode.ensemble)."
           if together > 1 else "every run trained alone."),
        f"Wall time of this invocation: {elapsed / 60:.1f} min.",
        runs_line(aggregates),
        f"Verdicts are computed from the numbers below (anode.lab.claims, declared in configs/toy/claims.toml). {VERDICT_RULE}",
    ]
    write_json(out / "summary.json", {"budget": budget, "note": note, "machine": machine_description(),
                                      "wall_time_s": elapsed, "jobs": jobs, "together": together,
                                      "claims": [c.to_dict() for c in claims], "aggregates": aggregates})
    _, html_path = write_report(out, title=suite.get("title", "anode toy reproduction"), summary=summary,
                                claims=claims, aggregates=aggregates, sections=sections)
    return html_path

