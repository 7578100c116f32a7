"""Run an experiment: models x datasets x repeats, optional search, resumable, failures recorded."""

from __future__ import annotations

import dataclasses
import itertools
import os
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from ..history import read_json, write_json
from ..rng import make_generator
from ..solve import SolverError
from ..training import TrainConfig, Trainer
from . import artifacts as art
from .aggregate import aggregate_experiment
from .backends import Backend, default_device, open_backend
from .backends.local import LocalBackend
from .builders import build_data, build_model
from .config import ExperimentConfig, ModelSpec
from .paths import model_dir

__all__ = ["RunUnit", "run_experiment", "run_unit"]


@dataclass(frozen=True)
class RunUnit:
    """One training run of an experiment (picklable, so it can run in a worker process)."""

    config: ExperimentConfig
    model: str
    dataset: str
    run_dir: str
    seed: int
    repeat: int | None  # None for a search run
    overrides: tuple[tuple[str, Any], ...] = ()
    epochs: int | None = None
    save_artifacts: bool = False
    device: str = "cpu"
    progress: bool = False


def _run_seed(base: int, repeat: int) -> int:
    return base * 1000 + repeat


def run_unit(unit: RunUnit) -> dict[str, Any]:
    """Train one model on one dataset; write history, summary, artifacts and `result.json`.

    A `SolverError` is caught and recorded as a failed run (with its reason); the history up to
    the failure is kept. Returns the result record.
    """
    cfg, run_dir = unit.config, Path(unit.run_dir)
    overrides = dict(unit.overrides)
    spec = model_spec_with(cfg.model(unit.model), overrides)
    dataset_spec = next(d for d in cfg.datasets if d.name == unit.dataset)
    data = build_data(dataset_spec, cfg, seed=unit.seed)
    device = torch.device(unit.device)
    model = build_model(spec, cfg, data, seed=unit.seed).to(device)
    lr = overrides.get("lr", spec.lr if spec.lr is not None else cfg.train.lr)
    weight_decay = overrides.get("weight_decay", spec.weight_decay if spec.weight_decay is not None else cfg.train.weight_decay)
    train_cfg = TrainConfig(
        epochs=unit.epochs if unit.epochs is not None else cfg.train.epochs, lr=lr, weight_decay=weight_decay, loss=cfg.train.loss,
        max_iterations=cfg.train.max_iterations, eval_every=cfg.train.eval_every, progress=unit.progress,
    )
    loader = data.train_loader(cfg.train.batch_size, seed=unit.seed)
    snapshots: list[dict[str, Any]] = []
    callback: Callable[[Trainer, dict[str, float]], None] | None = None
    if unit.save_artifacts and cfg.artifacts.feature_snapshots and data.is_toy:
        points, point_targets = art.select_points(data.train_x, data.train_y, cfg.artifacts.trajectories or 200)
        planned = train_cfg.epochs * len(loader)
        if train_cfg.max_iterations is not None:
            planned = min(planned, train_cfg.max_iterations)
        marks = {round(i * (planned - 1) / max(cfg.artifacts.feature_snapshots - 1, 1)) for i in range(cfg.artifacts.feature_snapshots)}

        def snapshot(trainer: Trainer, record: dict[str, float]) -> None:
            if record["iteration"] in marks:
                feats = art.features_of(trainer.model, points.to(device))
                snapshots.append({"iteration": record["iteration"], "features": feats.cpu().tolist()})

        callback = snapshot

    extra = {
        "experiment": cfg.name, "model": unit.model, "dataset": unit.dataset, "seed": unit.seed,
        "repeat": unit.repeat, "overrides": overrides, "model_spec": dataclasses.asdict(spec), "device": unit.device,
    }
    trainer = Trainer(model, train_cfg, out_dir=run_dir, callback=callback, extra_state=extra)
    started = time.perf_counter()
    try:
        trainer.fit(loader, eval_loader=data.eval_loader(cfg.train.batch_size))
        status, reason, error_type = "completed", None, None
    except SolverError as err:
        status, reason, error_type = "failed", str(err), type(err).__name__
        trainer.history.save(run_dir)
    result = {**trainer.summary(), "status": status, "reason": reason, "error_type": error_type,
              "wall_time": time.perf_counter() - started}
    if unit.save_artifacts and status == "completed" and data.is_toy:
        result_artifacts = _artifacts(model, data, cfg, device)
        if snapshots:
            result_artifacts["feature_snapshots"] = snapshots
            result_artifacts["feature_labels"] = point_targets[:, 0].tolist()
        write_json(run_dir / "artifacts.json", result_artifacts)
    write_json(run_dir / "result.json", result)
    return result


def _artifacts(model: torch.nn.Module, data: Any, cfg: ExperimentConfig, device: torch.device) -> dict[str, Any]:
    spec = cfg.artifacts
    out: dict[str, Any] = {}
    model = model.cpu()
    if spec.trajectories:
        x, y = art.select_points(data.train_x, data.train_y, spec.trajectories)
        times, states = art.trajectories(model, x, spec.timesteps)
        out["trajectories"] = {"times": times.tolist(), "states": states.tolist(), "labels": y[:, 0].tolist()}
    if spec.input_map and data.train_x.shape[1] <= 2:
        out["input_map"] = art.input_map(model, data.train_x, spec.input_map)
        x, y = art.select_points(data.train_x, data.train_y, 300)
        out["input_map"]["points"] = x.tolist()
        out["input_map"]["point_labels"] = y[:, 0].tolist()
        if data.eval_x is not None:
            out["input_map"]["heldout_points"] = data.eval_x.tolist()
    if spec.vector_field and hasattr(model, "odeblock") and data.train_x.shape[1] + model.odeblock.augment_dim == 1:
        out["vector_field"] = art.vector_field_1d(model, data.train_x)
    model.to(device)
    return out


def _search_candidates(cfg: ExperimentConfig) -> list[dict[str, Any]]:
    if cfg.search is None:
        return []
    keys = sorted(cfg.search.space)
    grid = [dict(zip(keys, values)) for values in itertools.product(*(cfg.search.space[k] for k in keys))]
    if cfg.search.mode == "random" and cfg.search.num_samples < len(grid):
        order = torch.randperm(len(grid), generator=make_generator(cfg.seed))[: cfg.search.num_samples]
        grid = [grid[i] for i in sorted(order.tolist())]
    return grid


def _finished(run_dir: Path, retry_failed: bool) -> dict[str, Any] | None:
    path = run_dir / "result.json"
    if not path.exists():
        return None
    result = read_json(path)
    if retry_failed and result.get("status") == "failed":
        return None
    return result


def _guarded(unit: RunUnit) -> dict[str, Any]:
    """`run_unit`, turning an unexpected crash into a failed record so the experiment goes on."""
    try:
        return run_unit(unit)
    except Exception as err:  # recorded, not swallowed: the result says what happened
        result = {"status": "failed", "reason": f"{type(err).__name__}: {err}", "error_type": type(err).__name__,
                  "traceback": traceback.format_exc(), "model": unit.model, "dataset": unit.dataset, "seed": unit.seed}
        write_json(Path(unit.run_dir) / "result.json", result)
        return result


def _one_line(unit: RunUnit, result: dict[str, Any]) -> str:
    what = f"{unit.dataset} / {unit.model} / " + (f"seed {unit.seed}" if unit.repeat is not None else "search")
    if result.get("status") != "completed":
        return f"[failed] {what}: {str(result.get('reason'))[:160]}"
    ev = result.get("eval") or {}
    extra = f", eval loss {ev['loss']:.4f}, acc {ev['accuracy']:.3f}" if ev else ""
    return (f"[done] {what}: loss {result['final_loss']:.4f}, NFE {result['final_nfe_forward']:.1f}"
            f"{extra}, {result['iterations']} it in {result['wall_time']:.1f}s")


def run_experiment(
    config: ExperimentConfig,
    out_dir: str | os.PathLike[str],
    *,
    jobs: int = 1,
    device: str | None = None,
    progress: bool = True,
    retry_failed: bool = False,
    log: Callable[[str], None] | None = None,
    backend: str | Backend = "local",
    address: str | None = None,
    resources: dict[str, float] | None = None,
) -> dict[str, Any]:
    """Run (or resume) an experiment and write its aggregate.

    Layout: `out_dir/experiment.json` (the resolved config), `runs/<dataset>/<model>/seed-<s>/`
    (history.jsonl, epochs.json, summary.json, result.json, checkpoint.pt, artifacts.json),
    `runs/<dataset>/<model>/search/` and `search.json` when searching, and `aggregate.json`.
    Runs with a `result.json` are skipped, so rerunning a killed experiment resumes it.

    Arguments:
        config: the experiment.
        out_dir: where results go.
        jobs: runs trained in parallel worker processes (one thread each); 1 runs in-process. On a
            GPU the workers share the card (worth it only when one run leaves it mostly idle).
        device: "cpu", "cuda", ...; None picks CUDA when available.
        progress: progress bars (one-line summaries of finished runs go to `log` either way).
        retry_failed: rerun runs recorded as failed.
        log: where one-line summaries go (default: tqdm.write; pass `lambda _: None` to silence).
        backend: where runs execute: "local" (this process or `jobs` worker processes), "ray"
            (one Ray task per run; see `anode.experiments.backends.ray.RayBackend`), or a backend
            object from `backends.make_backend` (entered by the caller, reused across experiments).
        address: ray only: join this running cluster (None starts a local instance of `jobs` CPUs).
        resources: ray only: per-run task resources, keys "cpus" (default 1) and "gpus" (default 0).

    Returns:
        The aggregate (also written to `aggregate.json`).

    Raises:
        ValueError: `jobs` < 1.
        ConfigError: unknown backend or resource key, Ray missing for "ray", or (ray) an output
            folder that some cluster node cannot see; raised before any run starts.
    """
    if isinstance(jobs, bool) or not isinstance(jobs, int) or jobs < 1:
        raise ValueError(f"jobs must be a positive integer, got {jobs!r}")
    out = Path(out_dir)
    executor, owned = open_backend(backend, jobs=jobs, address=address, resources=resources)
    try:
        device = device or default_device(executor)
        if hasattr(executor, "check_output"):
            executor.check_output(out)
        return _run(config, out, executor, jobs=jobs, device=device, progress=progress, retry_failed=retry_failed, log=log)
    finally:
        if owned:
            executor.__exit__(None, None, None)


def _run(config: ExperimentConfig, out: Path, executor: Backend, *, jobs: int, device: str, progress: bool,
         retry_failed: bool, log: Callable[[str], None] | None) -> dict[str, Any]:
    write_json(out / "experiment.json", config.to_dict())
    log = log or tqdm.write
    inner_progress = progress and jobs == 1 and isinstance(executor, LocalBackend)

    def report(unit: RunUnit, result: dict[str, Any]) -> None:
        if not (Path(unit.run_dir) / "result.json").exists():  # lost by the backend (a Ray worker died past its retries)
            write_json(Path(unit.run_dir) / "result.json", {**result, "model": unit.model, "dataset": unit.dataset, "seed": unit.seed})
        log(_one_line(unit, result))

    def pending(units: list[RunUnit]) -> list[RunUnit]:
        todo = []
        for unit in units:
            if _finished(Path(unit.run_dir), retry_failed) is None:
                todo.append(unit)
        return todo

    chosen: dict[tuple[str, str], dict[str, Any]] = {}
    if config.search is not None:
        candidates = _search_candidates(config)
        units = [
            RunUnit(config, m.name, d.name, str(model_dir(out, d.name, m.name) / "search" / f"candidate-{i}"),
                    _run_seed(config.seed, 0), None, tuple(sorted(c.items())), config.search.epochs, False, device,
                    inner_progress)
            for d in config.datasets for m in config.models for i, c in enumerate(candidates)
        ]
        executor.execute(pending(units), fn=_guarded, on_result=report, progress=progress, desc=f"{config.name}: search")
        for d in config.datasets:
            for m in config.models:
                chosen[(d.name, m.name)] = _pick_best(model_dir(out, d.name, m.name), candidates)

    units = [
        RunUnit(config, m.name, d.name, str(model_dir(out, d.name, m.name) / f"seed-{_run_seed(config.seed, r)}"),
                _run_seed(config.seed, r), r, tuple(sorted(chosen.get((d.name, m.name), {}).items())), None,
                r == 0 and _wants_artifacts(config), device, inner_progress)
        for r in range(config.repeats) for d in config.datasets for m in config.models
    ]
    executor.execute(pending(units), fn=_guarded, on_result=report, progress=progress, desc=f"{config.name}: runs")
    aggregate = aggregate_experiment(config, out)
    write_json(out / "aggregate.json", aggregate)
    return aggregate


def _wants_artifacts(config: ExperimentConfig) -> bool:
    a = config.artifacts
    return bool(a.trajectories or a.feature_snapshots or a.input_map or a.vector_field)


def _pick_best(model_dir: Path, candidates: list[dict[str, Any]]) -> dict[str, Any]:
    """Best candidate by final training loss (failed runs rank last); written to `search.json`."""
    scored = []
    for i, cand in enumerate(candidates):
        result = read_json(model_dir / "search" / f"candidate-{i}" / "result.json")
        loss = result.get("final_loss") if result.get("status") == "completed" else None
        scored.append({"candidate": cand, "final_loss": loss, "status": result.get("status"), "reason": result.get("reason")})
    ok = [s for s in scored if s["final_loss"] is not None]
    best = min(ok, key=lambda s: s["final_loss"])["candidate"] if ok else {}
    write_json(model_dir / "search.json", {"candidates": scored, "best": best})
    return best


def model_spec_with(spec: ModelSpec, overrides: dict[str, Any]) -> ModelSpec:
    """`spec` with searched architecture values applied (lr and weight decay live in training)."""
    return dataclasses.replace(spec, **{k: v for k, v in overrides.items() if k not in ("lr", "weight_decay")})
