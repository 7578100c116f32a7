"""`anode reproduce cnf`: CNF vs augmented CNF on 2-D densities, with figures and claim verdicts.

The paper's Sec. 6 conjectures that augmentation would lower the NFE of continuous normalizing
flows. This reproduction trains, with the same budget, tolerance and batch, a CNF, augmented CNFs
(p = 1 and 2; q(a | x) = N(0, I) or a learned diagonal Gaussian) whose fields are matched in
parameter count to the CNF's, and a CNF with the kinetic-energy and Jacobian-norm regularisers
(Finlay et al. 2020), on the densities of `configs/cnf/suite.toml`, and judges
`configs/cnf/claims.toml` with the one evaluator, `anode.lab.claims.evaluate_claims`.

Every run writes `OUT/runs/<dataset>/<model>/seed-<s>/history.jsonl` (one JSON line per
iteration: loss, regularisation, forward and backward NFE, time) and `result.json`; the first
repeat also writes `artifacts.json` (the learned log-density on a grid and samples). A finished
run whose settings are unchanged is reused, so rerunning the command resumes it; the figures and
the report are redrawn from these files.
"""

from __future__ import annotations

import dataclasses
import math
import os
import time
import traceback
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import tomllib
import torch

import anode
from anode.config import SolverConfig
from anode.data.densities import DENSITIES, make_density
from anode.history import History, read_json, write_json
from anode.lab.claims import VERDICT_RULE, check_claims, evaluate_claims, load_claims
from anode.lab.experiments.aggregate import mean_std
from anode.lab.experiments.config import ROLES
from anode.lab.experiments.lock import locks_output
from anode.lab.experiments.paths import repeat_dirs, run_seed
from anode.lab.experiments.runner import move_aside
from anode.lab.experiments.schema import ConfigError, build
from anode.lab.report import Section, machine_description, runs_line, write_report
from anode.lab.reproduce.cnf_figures import EXTENT, save_cnf_figures
from anode.lab.reproduce.toy import builtin_config, check_budget_keys
from anode.models.cnf import AUGMENTED_POSTERIORS
from anode.models.fields import NON_LINEARITIES
from anode.training.density import fit_density, test_log_likelihood

__all__ = ["CNF_BUDGET_KEYS", "CNFExperiment", "CNFModelSpec", "CNFTrainSpec", "DensitySpec", "aggregate_cnf",
           "load_cnf_suite", "reproduce_cnf"]

#: Keys a budget of `configs/cnf/suite.toml` may set.
CNF_BUDGET_KEYS = ("note", "repeats", "iterations", "grid", "num_samples")


@dataclass(frozen=True)
class DensitySpec:
    """A 2-D density of `anode.data.densities` (`density`, one of `DENSITIES`) with train/test sizes.
    `note` (optional) is printed in the report's list of densities (e.g. why this density was chosen);
    it does not determine a run."""

    name: str
    density: str
    num_train: int = 4096
    num_test: int = 1024
    note: str = ""

    def __post_init__(self) -> None:
        if self.density not in DENSITIES:
            raise ValueError(f"dataset {self.name!r}: unknown density {self.density!r}; valid choices: {sorted(DENSITIES)}")
        for key in ("num_train", "num_test"):
            if getattr(self, key) < 1:
                raise ValueError(f"dataset {self.name!r}: {key} must be >= 1, got {getattr(self, key)}")


@dataclass(frozen=True)
class CNFModelSpec:
    """One model: a CNF (`augment_dim` = 0) or an augmented CNF (p >= 1 with q = `augmentation`, one of
    `AUGMENTED_POSTERIORS`). The field is `anode.ODEFunc` (two hidden layers, time-dependent); its width is
    `hidden_dim`, or, with `match_parameters`, the width whose field has the parameter count closest to that
    model's field. `posterior_hidden` is the width of the learned q's MLP. `kinetic_energy`/`jacobian_norm`
    (None: the experiment's) are regulariser weights. `role`: "baseline" (a CNF), "augmented", or "variant"."""

    name: str
    role: str
    augment_dim: int = 0
    augmentation: str | None = None
    hidden_dim: int = 32
    match_parameters: str | None = None
    non_linearity: str = "tanh"
    posterior_hidden: int = 16
    kinetic_energy: float | None = None
    jacobian_norm: float | None = None
    weight_decay: float | None = None

    def __post_init__(self) -> None:
        if self.role not in ROLES:
            raise ValueError(f"model {self.name!r}: unknown role {self.role!r}; valid choices: {list(ROLES)}")
        if self.augment_dim < 0:
            raise ValueError(f"model {self.name!r}: augment_dim must be >= 0, got {self.augment_dim}")
        if self.augment_dim == 0 and self.augmentation is not None:
            raise ValueError(f"model {self.name!r}: augmentation {self.augmentation!r} needs augment_dim >= 1 "
                             "(p = 0 is a plain CNF: leave augmentation out)")
        if self.augment_dim > 0 and self.augmentation not in AUGMENTED_POSTERIORS:
            raise ValueError(f"model {self.name!r}: an augmented CNF needs augmentation, its q(a | x), one of "
                             f"{list(AUGMENTED_POSTERIORS)}; got {self.augmentation!r}")
        if self.role == "baseline" and self.augment_dim != 0:
            raise ValueError(f"model {self.name!r}: role 'baseline' is a CNF (augment_dim = 0), got {self.augment_dim}")
        if self.role == "augmented" and self.augment_dim < 1:
            raise ValueError(f"model {self.name!r}: role 'augmented' needs augment_dim >= 1")
        if self.non_linearity not in NON_LINEARITIES:
            raise ValueError(f"model {self.name!r}: unknown non_linearity {self.non_linearity!r}; "
                             f"valid choices: {sorted(NON_LINEARITIES)}")
        for key in ("hidden_dim", "posterior_hidden"):
            if getattr(self, key) < 1:
                raise ValueError(f"model {self.name!r}: {key} must be >= 1, got {getattr(self, key)}")
        for key in ("kinetic_energy", "jacobian_norm", "weight_decay"):
            value = getattr(self, key)
            if value is not None and not (math.isfinite(value) and value >= 0):
                raise ValueError(f"model {self.name!r}: {key} must be a finite number >= 0, got {value!r}")


@dataclass(frozen=True)
class CNFTrainSpec:
    """Training and evaluation settings shared by every model."""

    iterations: int = 300
    lr: float = 5e-3
    batch_size: int = 256
    weight_decay: float = 0.0
    kinetic_energy: float = 0.0
    jacobian_norm: float = 0.0
    iw_samples: int = 16
    grid: int = 64
    grid_iw_samples: int = 8
    num_samples: int = 2000

    def __post_init__(self) -> None:
        for key in ("iterations", "batch_size", "iw_samples", "grid_iw_samples", "num_samples"):
            if getattr(self, key) < 1:
                raise ValueError(f"train.{key} must be >= 1, got {getattr(self, key)}")
        if self.grid < 2:
            raise ValueError(f"train.grid is a grid resolution and must be >= 2, got {self.grid}")
        if not (math.isfinite(self.lr) and self.lr > 0):
            raise ValueError(f"train.lr must be a finite number > 0, got {self.lr!r}")
        for key in ("weight_decay", "kinetic_energy", "jacobian_norm"):
            if not (math.isfinite(getattr(self, key)) and getattr(self, key) >= 0):
                raise ValueError(f"train.{key} must be a finite number >= 0, got {getattr(self, key)!r}")


@dataclass(frozen=True)
class CNFExperiment:
    """The whole experiment (`configs/cnf/suite.toml` without its budgets). It has the attributes the
    claims evaluator reads of an experiment (`name`, `datasets`, `models`, `train.weight_decay`,
    `train.kinetic_energy`), so `evaluate_claims` judges it as it judges the toy suite."""

    name: str
    datasets: tuple[DensitySpec, ...]
    models: tuple[CNFModelSpec, ...]
    title: str = ""
    description: str = ""
    seed: int = 0
    repeats: int = 3
    train: CNFTrainSpec = CNFTrainSpec()
    solver: SolverConfig = SolverConfig(rtol=1e-5, atol=1e-5)

    def __post_init__(self) -> None:
        if self.repeats < 1:
            raise ValueError(f"repeats must be >= 1, got {self.repeats}")
        for label, items in (("datasets", self.datasets), ("models", self.models)):
            names = [item.name for item in items]
            if not names or len(set(names)) != len(names):
                raise ValueError(f"{label} must be a non-empty list with unique names, got {names}")
        names = [m.name for m in self.models]
        for m in self.models:
            if m.match_parameters is not None:
                if m.match_parameters not in names or m.match_parameters == m.name:
                    raise ValueError(f"model {m.name!r}: match_parameters {m.match_parameters!r} must name another model "
                                     f"of the experiment: {names}")
                if self.model(m.match_parameters).match_parameters is not None:
                    raise ValueError(f"model {m.name!r}: match_parameters must name a model with its own hidden_dim, "
                                     f"not {m.match_parameters!r}")

    def model(self, name: str) -> CNFModelSpec:
        """The model called `name`."""
        return next(m for m in self.models if m.name == name)

    def weight(self, model: CNFModelSpec, key: str) -> float:
        """The model's effective `key` (kinetic_energy, jacobian_norm, weight_decay): its own, else the experiment's."""
        own = getattr(model, key)
        return float(getattr(self.train, key) if own is None else own)


# ----------------------------------------------------------------------------- the suite file


def _suite_table() -> dict[str, Any]:
    path = builtin_config("cnf/suite")
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(f"{path}: cannot parse: {err}") from err


def load_cnf_suite(budget: str = "default") -> tuple[CNFExperiment, str]:
    """The experiment of `configs/cnf/suite.toml` with `budget` applied, and the budget's note.

    Arguments:
        budget: a name of the suite's `[budgets]` ("smoke", "default", "full").

    Returns:
        (experiment, note).

    Raises:
        ConfigError: an unknown budget (the valid ones are listed), an unknown budget key, or an invalid suite.
    """
    data = _suite_table()
    budgets = dict(data.pop("budgets", {}))
    if budget not in budgets:
        raise ConfigError(f"unknown budget {budget!r}; valid choices: {sorted(budgets)}")
    table = dict(budgets[budget])
    check_budget_keys(f"budgets.{budget}", table, CNF_BUDGET_KEYS)
    note = str(table.pop("note", budget))
    data["datasets"] = [build(DensitySpec, d, f"cnf/suite.toml.datasets[{i}]") for i, d in enumerate(data.get("datasets", []))]
    data["models"] = [build(CNFModelSpec, m, f"cnf/suite.toml.models[{i}]") for i, m in enumerate(data.get("models", []))]
    experiment = build(CNFExperiment, data, "cnf/suite.toml")
    if "repeats" in table:
        experiment = dataclasses.replace(experiment, repeats=int(table.pop("repeats")))
    if table:
        experiment = dataclasses.replace(experiment, train=dataclasses.replace(experiment.train, **table))
    return experiment, note


# ----------------------------------------------------------------------------- models


def _field(model: CNFModelSpec, width: int) -> torch.nn.Module:
    return anode.ODEFunc(2, width, augment_dim=model.augment_dim, time_dependent=True, non_linearity=model.non_linearity)


def _count(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def field_width(experiment: CNFExperiment, model: CNFModelSpec) -> int:
    """The field's width: `hidden_dim`, or the one matching the parameter count of `match_parameters`' field."""
    if model.match_parameters is None:
        return model.hidden_dim
    target_spec = experiment.model(model.match_parameters)
    target = _count(_field(target_spec, target_spec.hidden_dim))
    return min(range(1, 4 * target_spec.hidden_dim + 1), key=lambda w: (abs(_count(_field(model, w)) - target), w))


def build_density_model(experiment: CNFExperiment, model: CNFModelSpec, *, seed: int) -> torch.nn.Module:
    """The `anode.CNF` or `anode.AugmentedCNF` of `model`, initialised from `seed`."""
    width = field_width(experiment, model)
    with anode.seeded(seed):
        field = _field(model, width)
        if model.augment_dim == 0:
            return anode.CNF(field, dim=2, solver=experiment.solver)
        return anode.AugmentedCNF(field, data_dim=2, augment_dim=model.augment_dim, posterior=model.augmentation,
                                  posterior_hidden=model.posterior_hidden, solver=experiment.solver)


# ----------------------------------------------------------------------------- one run


def _settings(experiment: CNFExperiment, dataset: DensitySpec, model: CNFModelSpec) -> dict[str, Any]:
    """What determines a run (besides its seed): a finished run is reused only when these are unchanged."""
    data = {k: v for k, v in dataclasses.asdict(dataset).items() if k != "note"}
    return {"dataset": data, "model": dataclasses.asdict(model), "seed": experiment.seed,
            "train": dataclasses.asdict(experiment.train), "solver": dataclasses.asdict(experiment.solver),
            "matched_to": None if model.match_parameters is None else dataclasses.asdict(experiment.model(model.match_parameters))}


def _tenth(values: np.ndarray) -> int:
    return max(len(values) // 10, 1)


def _grid(n: int) -> torch.Tensor:
    axis = torch.linspace(-EXTENT, EXTENT, n)
    yy, xx = torch.meshgrid(axis, axis, indexing="ij")
    return torch.stack([xx.reshape(-1), yy.reshape(-1)], 1)


def _train_run(task: dict[str, Any]) -> dict[str, Any]:
    """Train and evaluate one run (in a worker process) and write its files; returns its result."""
    torch.set_num_threads(1)
    experiment: CNFExperiment = task["experiment"]
    dataset = next(d for d in experiment.datasets if d.name == task["dataset"])
    model_spec = experiment.model(task["model"])
    run_dir, seed, repeat = Path(task["run_dir"]), int(task["seed"]), int(task["repeat"])
    run_dir.mkdir(parents=True, exist_ok=True)
    train = experiment.train
    result: dict[str, Any] = {"dataset": dataset.name, "model": model_spec.name, "seed": seed, "settings": task["settings"]}
    started = time.perf_counter()
    try:
        data = make_density(dataset.density, dataset.num_train, seed=2 * experiment.seed)
        test = make_density(dataset.density, dataset.num_test, seed=2 * experiment.seed + 1)
        model = build_density_model(experiment, model_spec, seed=seed)
        field = model.odefunc if isinstance(model, anode.CNF) else model.cnf.odefunc
        result.update(num_parameters=_count(model), field_parameters=_count(field),
                      posterior_parameters=_count(model) - _count(field), width=field_width(experiment, model_spec))
        records = fit_density(model, data, iterations=train.iterations, batch_size=min(train.batch_size, data.shape[0]),
                              lr=train.lr, seed=seed, weight_decay=experiment.weight(model_spec, "weight_decay"),
                              kinetic_energy=experiment.weight(model_spec, "kinetic_energy"),
                              jacobian_norm=experiment.weight(model_spec, "jacobian_norm"))
        History(iterations=records).save(run_dir)
        eval_start = time.perf_counter()
        gen = torch.Generator().manual_seed(seed + 1)
        log_lik = test_log_likelihood(model, test, k=train.iw_samples, generator=gen)
        result["eval_time"] = time.perf_counter() - eval_start
        loss = np.array([r["loss"] for r in records])
        nfe = np.array([r["nfe_forward"] for r in records], dtype=float)
        result.update(status="completed", final_loss=float(loss[-_tenth(loss):].mean()),
                      final_nfe_forward=float(nfe[-_tenth(nfe):].mean()),
                      test_log_likelihood=float(log_lik.mean()), eval={"loss": float(-log_lik.mean()), "accuracy": None})
        if repeat == 0:
            grid = _grid(train.grid)
            density = test_log_likelihood(model, grid, k=train.grid_iw_samples, generator=torch.Generator().manual_seed(seed + 2))
            with torch.no_grad():
                samples = model.sample(train.num_samples, generator=torch.Generator().manual_seed(seed + 3))
            write_json(run_dir / "artifacts.json", {"grid": train.grid, "extent": EXTENT, "grid_iw_samples": train.grid_iw_samples,
                                                    "log_density": density.reshape(train.grid, train.grid).tolist(),
                                                    "samples": samples.tolist()})
    except Exception as err:  # a failed run is evidence: recorded, never dropped
        result.update(status="failed", reason=f"{type(err).__name__}: {err}", error_type=type(err).__name__,
                      traceback=traceback.format_exc(limit=5))
    result["wall_time"] = time.perf_counter() - started
    write_json(run_dir / "result.json", result)
    return result


def _finished(run_dir: Path, settings: dict[str, Any], retry_failed: bool) -> dict[str, Any] | None:
    path = run_dir / "result.json"
    if not path.exists():
        return None
    result = read_json(path)
    if result.get("settings") != settings or (retry_failed and result.get("status") != "completed"):
        return None
    return result


# ----------------------------------------------------------------------------- aggregate


def aggregate_cnf(experiment: CNFExperiment, out: str | os.PathLike[str]) -> dict[str, Any]:
    """Summarise every (dataset, model) pair across its repeats, in `aggregate_experiment`'s format.

    Arguments:
        experiment: the experiment whose runs to read (seeds `seed * 1000 + r`, r < repeats).
        out: the results folder.

    Returns:
        `{"experiment", "runs_expected", "runs_finished", "runs_failed", "groups": [{dataset, model, completed,
        failed, failures, <metric>: {"mean", "std", "n"}}]}` with the metrics `final_loss` (training loss of the last
        tenth of the iterations), `mean_nfe_forward`, `mean_nfe_backward` (over all iterations),
        `final_nfe_forward`, `nfe_growth` (mean forward NFE of the last tenth over the first tenth), `eval_loss`
        (minus the test log-likelihood: exact for a CNF, the IW bound for an augmented CNF), `test_log_likelihood`,
        `eval_accuracy` (none), `time_per_iteration` (median), `num_parameters`, `field_parameters`,
        `posterior_parameters`, `wall_time`.
    """
    out = Path(out)
    groups = []
    for d in experiment.datasets:
        for m in experiment.models:
            dirs = [p for p in repeat_dirs(out, d.name, m.name, seed=experiment.seed, repeats=experiment.repeats)
                    if (p / "result.json").exists()]
            results = [(p, read_json(p / "result.json")) for p in dirs]
            done = [(p, r) for p, r in results if r.get("status") == "completed"]
            keys = ("final_loss", "mean_nfe_forward", "mean_nfe_backward", "final_nfe_forward", "nfe_growth", "eval_loss",
                    "test_log_likelihood", "eval_accuracy", "time_per_iteration", "num_parameters", "field_parameters",
                    "posterior_parameters", "wall_time")
            metrics: dict[str, list[float]] = {k: [] for k in keys}
            for run, r in done:
                hist = History.load(run)
                nfe = hist.array("nfe_forward")
                first = nfe[: _tenth(nfe)].mean()
                metrics["mean_nfe_forward"].append(float(nfe.mean()))
                metrics["mean_nfe_backward"].append(float(hist.array("nfe_backward").mean()))
                metrics["nfe_growth"].append(float(nfe[-_tenth(nfe):].mean() / first) if first > 0 else float("nan"))
                metrics["time_per_iteration"].append(float(np.median(hist.array("time"))))
                metrics["eval_loss"].append(r["eval"]["loss"])
                for key in ("final_loss", "final_nfe_forward", "test_log_likelihood", "num_parameters", "field_parameters",
                            "posterior_parameters", "wall_time"):
                    metrics[key].append(r[key])
            groups.append({"dataset": d.name, "model": m.name, "completed": len(done), "failed": len(results) - len(done),
                           "failures": [{"seed": r.get("seed"), "reason": r.get("reason"), "error_type": r.get("error_type")}
                                        for _, r in results if r.get("status") != "completed"],
                           **{k: mean_std(v) for k, v in metrics.items()}})
    return {"experiment": experiment.name, "description": experiment.description, "repeats": experiment.repeats,
            "iterations": experiment.train.iterations,
            "runs_expected": experiment.repeats * len(experiment.datasets) * len(experiment.models),
            "runs_finished": sum(g["completed"] + g["failed"] for g in groups),
            "runs_failed": sum(g["failed"] for g in groups), "groups": groups}


# ----------------------------------------------------------------------------- the command


def _run_all(experiment: CNFExperiment, out: Path, *, jobs: int, retry_failed: bool, log: Callable[[str], None],
             progress: bool) -> None:
    tasks = []
    reused = 0
    for d in experiment.datasets:
        for m in experiment.models:
            settings = _settings(experiment, d, m)
            for r, run_dir in enumerate(repeat_dirs(out, d.name, m.name, seed=experiment.seed, repeats=experiment.repeats)):
                if _finished(run_dir, settings, retry_failed) is not None:
                    reused += 1
                    continue
                tasks.append({"experiment": experiment, "dataset": d.name, "model": m.name, "repeat": r,
                              "seed": run_seed(experiment.seed, r), "run_dir": str(run_dir), "settings": settings})
    if reused:
        log(f"reusing {reused} finished run(s) in {out / 'runs'}")
    if not tasks:
        return
    if jobs == 1:
        results = map(_train_run, tasks)
        for i, result in enumerate(results, 1):
            _report_run(result, i, len(tasks), log, progress)
        return
    with ProcessPoolExecutor(max_workers=jobs) as pool:
        for i, result in enumerate(pool.map(_train_run, tasks), 1):
            _report_run(result, i, len(tasks), log, progress)


def _report_run(result: dict[str, Any], i: int, total: int, log: Callable[[str], None], progress: bool) -> None:
    if result.get("status") != "completed":
        log(f"[{i}/{total}] {result['dataset']} / {result['model']} seed {result['seed']}: FAILED ({result.get('reason')})")
    elif progress:
        log(f"[{i}/{total}] {result['dataset']} / {result['model']} seed {result['seed']}: "
            f"test log-likelihood {result['test_log_likelihood']:.3f}, {result['wall_time']:.1f} s")


def _model_table(experiment: CNFExperiment, aggregate: dict[str, Any]) -> tuple[list[str], list[list[str]]]:
    header = ["dataset", "model", "p", "q(a | x)", "width", "field params", "q params", "test log-lik. (nats)",
              "mean NFE fwd", "mean NFE bwd", "NFE growth", "final train loss", "s / iteration"]
    rows = []
    for g in aggregate["groups"]:
        m = experiment.model(g["model"])

        def cell(key: str, digits: int = 3, group: dict[str, Any] = g) -> str:
            s = group[key]
            if s["mean"] is None:
                return "–"
            return f"{s['mean']:.{digits}g}" + (f" ± {s['std']:.2g}" if s["n"] > 1 else "")

        q = {None: "–", "standard_normal": "N(0, I)", "gaussian": "learned Gaussian"}[m.augmentation]
        field_params = g["field_parameters"]["mean"]
        q_params = g["posterior_parameters"]["mean"]
        rows.append([g["dataset"], g["model"], str(m.augment_dim), q, str(field_width(experiment, m)),
                     "–" if field_params is None else f"{field_params:,.0f}", "–" if q_params is None else f"{q_params:,.0f}",
                     cell("test_log_likelihood", 4), cell("mean_nfe_forward"), cell("mean_nfe_backward"), cell("nfe_growth"),
                     cell("final_loss", 4), cell("time_per_iteration", 2)])
    return header, rows


@locks_output("out_dir")
def reproduce_cnf(out_dir: str | os.PathLike[str], *, budget: str = "default", jobs: int | None = None,
                  progress: bool = True, fresh: bool = False, retry_failed: bool = False,
                  log: Callable[[str], None] | None = None) -> Path:
    """Train the CNF suite (reusing finished runs), draw its figures and write the report.

    Arguments:
        out_dir: runs go to `out_dir/runs/`, the report to `out_dir/report.{md,html}` with figures in
            `out_dir/figures/` and the numbers in `out_dir/summary.json`.
        budget: "default" (3 repeats x 300 iterations: about 4 min on 2 CPU cores, 2026-12-07), "full" (6 repeats
            x 1,000 iterations: 27 min on 2 CPU cores, 2026-12-07) or "smoke" (seconds, for tests).
        jobs: runs trained at once in worker processes, one thread each (default: the number of CPU cores).
        progress: a line per finished run.
        fresh: move the previous `out_dir` aside to `<out_dir>.old-<YYYYmmdd-HHMMSS>` and start afresh.
        retry_failed: rerun the runs recorded as failed instead of reusing them.
        log: where one-line messages go (default: print).

    Returns:
        The path of `report.html`.

    Raises:
        ConfigError: an unknown budget (the valid ones listed) or an invalid suite or claims file.
    """
    log = log or (lambda line: print(line, flush=True))
    out = Path(out_dir)
    experiment, note = load_cnf_suite(budget)
    claim_specs = load_claims(builtin_config("cnf/claims"))
    configs: dict[str, Any] = {experiment.name: experiment}
    check_claims(claim_specs, configs)
    jobs = jobs or max(os.cpu_count() or 1, 1)
    started = time.perf_counter()
    if fresh:
        moved = move_aside(out)
        if moved is not None:
            log(f"--fresh: moved the previous results in {out} aside to {moved}")
    out.mkdir(parents=True, exist_ok=True)
    _run_all(experiment, out, jobs=jobs, retry_failed=retry_failed, log=log, progress=progress)
    train_time = time.perf_counter() - started
    aggregate = aggregate_cnf(experiment, out)
    aggregates = {experiment.name: aggregate}
    write_json(out / "aggregate.json", aggregate)
    figures = save_cnf_figures(experiment, out)
    elapsed = time.perf_counter() - started
    claims = evaluate_claims(claim_specs, configs, aggregates)
    sections = [Section("Models (mean ± std over completed repeats)",
                        "Fields are anode.ODEFunc MLPs (two hidden layers, tanh, time-dependent); each augmented CNF's width is the "
                        "one whose field has the parameter count closest to the CNF's field (the learned q's MLP is counted "
                        "separately, under q params). Test log-likelihood: exact log p(x) for the CNFs, the importance-weighted "
                        f"bound with K = {experiment.train.iw_samples} for the augmented CNFs (a lower bound on their log p(x)), "
                        f"on {experiment.datasets[0].num_test} held-out points. NFE: evaluations of the field per iteration "
                        "(backward: the adjoint's; 0 when backpropagating through the solver).",
                        table=_model_table(experiment, aggregate))]
    for title, text, items in figures:
        section = Section(title, text)
        for caption, path in items:
            section.figures.append((caption, path))
        sections.append(section)
    cmd = "anode reproduce cnf --out " + str(out) + ("" if budget == "default" else f" --budget {budget}")
    train = experiment.train
    solver = experiment.solver
    summary = [
        f"Command: `{cmd}` (finished runs are reused; `--fresh` moves them aside and starts afresh).",
        f"Budget: {budget}: {note}; Adam, learning rate {train.lr:g}, the same for every model. Seeds: training data from "
        f"seed {2 * experiment.seed}, test data from seed {2 * experiment.seed + 1}, repeat r uses seed r for weights, "
        "batch order, q's draws and evaluation.",
        "Densities: " + "; ".join(f"{d.name} (`{d.density}`, {d.num_train} training and {d.num_test} test points)"
                                  + (f": {d.note}" if d.note else "") for d in experiment.datasets) + ".",
        f"Solver: {solver.method}, rtol = {solver.rtol:g}, atol = {solver.atol:g}, adjoint = {solver.adjoint}, "
        f"backend {solver.backend}; exact trace (in closed form for these MLP fields, `anode.models.mlp_trace`).",
        f"Machine: {machine_description()}; {jobs} parallel run(s), one thread each.",
        f"Wall time of this invocation: {elapsed / 60:.1f} min (training and evaluation {train_time / 60:.1f} min).",
        runs_line(aggregates),
        "The test log-likelihood of the claims is exact for a CNF and the importance-weighted bound (K = "
        f"{train.iw_samples}) for an augmented CNF, in nats; eval loss in the results table is minus it; "
        "last-epoch loss is the training loss (negative log-likelihood or negative ELBO) averaged over the last "
        "tenth of the iterations; NFE growth is the mean forward NFE of the last tenth of training over the first tenth.",
        f"Verdicts are computed from the numbers below (anode.lab.claims, declared in configs/cnf/claims.toml). {VERDICT_RULE}",
    ]
    write_json(out / "summary.json", {"budget": budget, "note": note, "machine": machine_description(), "wall_time_s": elapsed,
                                      "jobs": jobs, "claims": [c.to_dict() for c in claims], "aggregates": aggregates})
    _, html_path = write_report(out, title=experiment.title or "anode CNF reproduction", summary=summary, claims=claims,
                                aggregates=aggregates, sections=sections)
    return html_path

