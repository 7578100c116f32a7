"""The config file reference (`docs/config.md`), generated from the config dataclasses.

Keys, types and defaults come from the dataclasses themselves (`dataclasses.fields`, type hints);
what each key means comes from `MEANINGS`, one mapping keyed "Section.key" (the dataclass name, or
`ToyBudget`/`ImageBudget` for the suite files' budget tables). Tests fail when a field has no meaning
here or when `docs/config.md` differs from `config_reference()`. Regenerate with

    python -m anode.lab.docgen > docs/config.md     (or: anode config-docs --out docs/config.md)
"""

from __future__ import annotations

import dataclasses
import sys
import types
import typing
from typing import Any, Union

from anode.config import SolverConfig
from anode.lab.claims import METRICS, ClaimSpec, Selector, TestSpec
from anode.lab.experiments.config import (
    DATASET_KINDS,
    EXPERIMENT_METRICS,
    MODEL_KINDS,
    SEARCHABLE,
    ArtifactSpec,
    ExperimentConfig,
    ModelSpec,
    SearchSpec,
    TrainSpec,
)

__all__ = ["MEANINGS", "config_reference", "documented_keys", "main", "missing_meanings",
           "stale_meanings"]

# What every key means, keyed "Section.key". Keep one entry per field: the drift tests check both ways.
MEANINGS: dict[str, str] = {
    # top level
    "ExperimentConfig.name": "The experiment's name: the report's title and the key of its results.",
    "ExperimentConfig.datasets": "The datasets, one `[[datasets]]` table each (see below); every model is trained on each.",
    "ExperimentConfig.models": "The models, one `[[models]]` table each (see below).",
    "ExperimentConfig.description": "One line saying what the experiment shows (quoted in the report).",
    "ExperimentConfig.paper": "Where in the paper the experiment comes from, e.g. \"Sec. 5.1; Fig. 7\".",
    "ExperimentConfig.seed": "Base seed: the data are drawn with it; repeat r trains with seed 1000 x seed + r "
                             "(weights and batch order).",
    "ExperimentConfig.repeats": "Training runs per (dataset, model) pair, each with its own seed; results are mean ± std over them.",
    "ExperimentConfig.train": "Training settings shared by the models: the `[train]` table.",
    "ExperimentConfig.solver": "How the ODE is solved: the `[solver]` table.",
    "ExperimentConfig.search": "Optional hyperparameter search run before the repeats: the `[search]` table.",
    "ExperimentConfig.artifacts": "What the first repeat records for figures beyond its history: the `[artifacts]` table.",
    "ExperimentConfig.claims": ("Claims the experiment's report judges, one `[[claims]]` table each (see \"Claims of your own "
                                "experiment\" below); none: the report has no claim table."),
    # [train]
    "TrainSpec.epochs": "Passes over the training data per run.",
    "TrainSpec.lr": "Adam learning rate (a model's own `lr` overrides it).",
    "TrainSpec.batch_size": "Examples per training iteration.",
    "TrainSpec.weight_decay": "Adam weight decay (a model's own `weight_decay` overrides it).",
    "TrainSpec.loss": "Training loss: \"huber\", \"mse\" or \"cross_entropy\" (images).",
    "TrainSpec.max_iterations": "Stop each run after this many iterations, whatever `epochs` says (omit: no limit).",
    "TrainSpec.eval_every": "Evaluate on the held-out data every this many epochs (and after the last).",
    "TrainSpec.checkpoint_every": ("Write a checkpoint every this many epochs (bookkeeping: results do not change; "
                                   "omit: every epoch on image data, about every 500 iterations on toy data)."),
    # [solver]
    "TrainSpec.kinetic_energy": "Weight of the kinetic-energy regulariser, the integral of |f|^2 along the solve "
                                "(Finlay et al., 2020); 0 turns it off. It is added to the loss; the history records it.",
    "TrainSpec.jacobian_norm": "Weight of the Jacobian Frobenius-norm regulariser (a Hutchinson estimate integrated "
                               "along the solve, noise seeded from the run's seed); 0 turns it off.",
    "SolverConfig.method": "ODE method: adaptive dopri5, dopri8, bosh3, fehlberg2, adaptive_heun; fixed-step euler, "
                           "midpoint, heun2, heun3, rk4, explicit_adams, implicit_adams (need `step_size`).",
    "SolverConfig.rtol": "Relative tolerance of adaptive methods (the paper: 1e-3).",
    "SolverConfig.atol": "Absolute tolerance of adaptive methods (the paper: 1e-3).",
    "SolverConfig.adjoint": "Compute gradients with the adjoint method (O(1) memory, extra NFE in the backward "
                            "pass) instead of backpropagating through the solver.",
    "SolverConfig.max_num_steps": "Most steps an adaptive solve may take per output interval; more fails the run "
                                  "with MaxStepsExceeded (recorded, the experiment goes on).",
    "SolverConfig.step_size": "Step of fixed-step methods (required for them, rejected for adaptive ones).",
    "SolverConfig.adjoint_rtol": "Relative tolerance of the adjoint (backward) solve (omit: `rtol`; needs `adjoint = true`).",
    "SolverConfig.adjoint_atol": "Absolute tolerance of the adjoint solve (omit: `atol`; needs `adjoint = true`).",
    "SolverConfig.options": "Extra solver options passed to the method, validated against what it accepts (e.g. "
                            "`{ first_step = 0.1 }`, or `{ adjoint_options = { norm = \"seminorm\" } }` with the adjoint; the "
                            "\"anode\" backend takes only that seminorm).",
    "SolverConfig.backend": "Which solver implementation runs the method: \"torchdiffeq\" (the reference) or "
                            "\"anode\" (own fused Runge-Kutta loop, same steps and numbers, less Python work per step; "
                            "for an `ODEFunc` under dopri5/bosh3 without the adjoint, a backward written by hand).",
    "SolverConfig.step_control": "Step-size control of adaptive methods: \"batch\" (one step size for the whole batch, "
                                 "torchdiffeq's) or \"sample\" (backend \"anode\", dopri5/bosh3: each sample keeps its "
                                 "own step size, steps and NFE; the adjoint's backward solve stays one controller for the "
                                 "batch; stacked ensembles control (member, sample) pairs).",
    "SolverConfig.sample_failure": "What a sample whose solve fails does under `step_control = \"sample\"`: \"skip\" "
                                   "(its outputs from then on are NaN, the other samples go on unchanged, the failure "
                                   "is recorded in `NFE.failed_samples`; a training step with a failed sample stops "
                                   "the run before its optimiser step, evaluation leaves the sample out and counts "
                                   "it) or \"raise\" (stop at the first failure with its typed error, naming the "
                                   "sample). Under `step_control = \"batch\"` a failure stops the batch either way.",
    # [[datasets]]
    "G1DSpec.name": "The dataset's name (unique in the experiment; used in figure titles and folder names).",
    "G1DSpec.num_points": "Points drawn, each at x = -1 or x = +1 with equal probability.",
    "G1DSpec.target_flip": "true: the target is g1d(x) = -x (the map a 1-D NODE cannot learn); false: the identity.",
    "G1DSpec.noise_scale": "Standard deviation of Gaussian noise added to the inputs.",
    "SpheresSpec.name": "The dataset's name (unique in the experiment).",
    "SpheresSpec.dim": "Dimension d of the input space.",
    "SpheresSpec.inner_range": "[r_min, r_max] of the inner ball (target -1), sampled uniformly in volume.",
    "SpheresSpec.outer_range": "[r_min, r_max] of the outer shell (target +1); must start at or beyond the inner range's end.",
    "SpheresSpec.num_points_inner": "Points in the inner ball.",
    "SpheresSpec.num_points_outer": "Points in the outer shell.",
    "SpheresSpec.holdout_angle": "[start, end] angle in radians (d >= 2): points in this slice are left out of "
                                 "training and used as the evaluation set (omit: no hold-out).",
    "SinesSpec.name": "The dataset's name (unique in the experiment).",
    "SinesSpec.dim": "Dimension d of the input space.",
    "SinesSpec.shift": "Vertical distance between the two sines.",
    "SinesSpec.num_points_upper": "Points on the upper sine (target +1).",
    "SinesSpec.num_points_lower": "Points on the lower sine (target -1).",
    "SinesSpec.noise_scale": "Standard deviation of Gaussian noise added to the sines' values.",
    "ImageSpec.name": "The dataset's name (unique in the experiment).",
    "ImageSpec.dataset": "Reader: \"mnist\", \"idx\" (any set in MNIST's IDX files), \"cifar10\", \"svhn\", "
                         "\"tinyimagenet\" or \"folder\" ({train,test}/<class>/<image>).",
    "ImageSpec.data_dir": "Folder holding the data or its parent (omit: $ANODE_DATA_DIR; `--data-dir` overrides it).",
    "ImageSpec.normalization": "\"none\" (pixels in [0, 1], as the 2019 code) or \"standardize\" (per-channel "
                               "mean and std of the training set).",
    "ImageSpec.train_subset": "Train on the first-drawn N training images only (omit: all).",
    "ImageSpec.test_subset": "Evaluate on the first-drawn N test images only (omit: all).",
    "ImageSpec.options": "Reader options, e.g. `{ tiny_val_split = true }` (Tiny ImageNet from its validation "
                         "set only), `{ max_per_class = 100 }`, `{ verify_checksums = false }`.",
    # [[models]]
    "ModelSpec.name": "The model's name (unique in the experiment; legends, folder names, `match_parameters`).",
    "ModelSpec.role": "What the model stands for in claims: \"baseline\" (NODE, p = 0), \"augmented\" (ANODE, "
                      "p > 0), \"reference\" (a non-ODE baseline such as a ResNet) or \"variant\" (tested by no "
                      "claim, e.g. the extra models of a sweep); claims find models by role, never by name (omit: the "
                      "model is in no claim). A role must fit the model: baseline needs p = 0, augmented p >= 1.",
    # claims files ([[claims]] in configs/toy/claims.toml, configs/images/claims.toml)
    "ClaimSpec.claim": "The claim's sentence, as the report's claim table shows it.",
    "ClaimSpec.tests": "Its statistical tests (inline tables, keys below); the claim holds only when every test holds.",
    "ClaimSpec.experiment": "The experiment (config `name`) the tests read; omit it when the report has one experiment.",
    "TestSpec.metric": "What is compared, one of the aggregate's metrics: " + ", ".join(f"`{m}`" for m in METRICS) + ".",
    "TestSpec.datasets": "Datasets (by name) the test runs on, each must hold; omit for every dataset of the experiment.",
    "TestSpec.better": "A comparison: the model (a selector table) claimed better (lower loss or NFE, higher accuracy).",
    "TestSpec.worse": "A comparison: the model it is compared with (one-sided Welch t-test, alpha = 0.05, >= 3 repeats a side).",
    "TestSpec.factor": "A comparison: `better` must beat `worse` by this factor (2: below half of it, or above twice it).",
    "TestSpec.margin": "A comparison without a factor: `better` must not be worse than `worse` by this much or more, in "
                       "the metric's units (a non-inferiority test; 0: `better` must beat `worse`).",
    "TestSpec.model": "A threshold test: the model (a selector table) whose mean is compared with `below` or `above`.",
    "TestSpec.below": "A threshold test: the claim is mean < this value (one-sided one-sample t-test, alpha = 0.05).",
    "TestSpec.above": "A threshold test: the claim is mean > this value.",
    "Selector.role": "The model's role (see `[[models]]`); the selector must pick exactly one model of the experiment.",
    "Selector.augment_dim": "Narrows the selection to the model with this p.",
    "Selector.weight_decay": "Narrows the selection to the model with this effective weight decay (its own, else `[train]`'s).",
    "Selector.augmentation": "Narrows the selection to the model with this augmentation (zeros, learned, second_order, ...).",
    "Selector.kinetic_energy": "Narrows the selection to the model with this effective kinetic-energy weight.",
    "Selector.dataset": "Fixes this side's dataset (e.g. one model on two datasets); then every selector of the test names one.",
    "ModelSpec.kind": "\"odenet\" (NODE/ANODE with a linear readout), \"flow\" (the ODE flow alone: prediction = "
                      "the first d coordinates of h(1)), \"resnet\", \"convodenet\", \"convresnet\".",
    "ModelSpec.hidden_dim": "Width of the hidden layers (MLP) or number of conv filters (resnets with "
                            "`match_parameters`: ignored).",
    "ModelSpec.augment_dim": "p: zero dimensions (channels for conv models) appended to the state; 0 is a plain NODE.",
    "ModelSpec.time_dependent": "Feed t to the vector field (as an extra input or channel).",
    "ModelSpec.non_linearity": "Activation of the vector field: \"relu\", \"softplus\" or \"tanh\".",
    "ModelSpec.num_layers": "resnet and convresnet: number of residual blocks (ODE models ignore it).",
    "ModelSpec.match_parameters": "resnet only: name of another model whose parameter count the width is chosen to "
                                  "match (omit: use `hidden_dim`).",
    "ModelSpec.lr": "This model's learning rate (omit: `[train] lr`).",
    "ModelSpec.weight_decay": "This model's weight decay (omit: `[train] weight_decay`).",
    # [search]
    "ModelSpec.augmentation": "How the p extra dimensions are made: \"zeros\" (the paper), \"learned\" (a linear "
                              "or 1x1-conv layer of the input, Massaroli et al. 2020), \"second_order\" / "
                              "\"second_order_learned\" (state [x, v], dx/dt = v, SONODE; p must equal the data's features).",
    "ModelSpec.kinetic_energy": "This model's kinetic-energy regulariser weight (omit: `[train] kinetic_energy`).",
    "ModelSpec.jacobian_norm": "This model's Jacobian-norm regulariser weight (omit: `[train] jacobian_norm`).",
    "SearchSpec.space": "Candidate values per hyperparameter, e.g. `{ lr = [1e-3, 3e-3], hidden_dim = [16, 32] }`; "
                        f"searchable: {', '.join(SEARCHABLE)}.",
    "SearchSpec.mode": "\"grid\" tries every combination; \"random\" draws `num_samples` of them (seeded by `seed`).",
    "SearchSpec.num_samples": "Combinations tried by random search.",
    "SearchSpec.epochs": "Epochs of each search run (omit: `[train] epochs`).",
    # [artifacts]
    "ArtifactSpec.trajectories": "Training points whose trajectories h(t) the first repeat saves (0: none).",
    "ArtifactSpec.timesteps": "Times in [0, 1] at which trajectories are saved.",
    "ArtifactSpec.feature_snapshots": "Snapshots of the features h(1) of those points taken during training (0: none).",
    "ArtifactSpec.input_map": "Grid resolution of the model's output over the input line/plane (0: none; else >= 2).",
    "ArtifactSpec.vector_field": "Save the 1-D vector field on a (t, h) grid when d + p = 1.",
    # suite files
    "ToyBudget.note": "One line describing the budget, quoted in the report.",
    "ToyBudget.repeats": "Repeats of that experiment under this budget (omit: the experiment file's `repeats`).",
    "ToyBudget.epochs": "Epochs of that experiment under this budget (omit: its `[train] epochs`).",
    "ToyBudget.max_iterations": "Iteration cap per run under this budget (omit: its `[train] max_iterations`).",
    "ImageBudget.note": "One line describing the budget, quoted in the report.",
    "ImageBudget.repeats": "Repeats per model (omit: the dataset config's `repeats`).",
    "ImageBudget.epochs": "Epochs per run (omit: the config's `[train] epochs`).",
    "ImageBudget.max_iterations": "Iteration cap per run (omit: no cap).",
    "ImageBudget.batch_size": "Batch size (omit: the config's `[train] batch_size`).",
    "ImageBudget.train_subset": "Train on the first-drawn N training images (omit: all).",
    "ImageBudget.test_subset": "Evaluate on the first-drawn N test images (omit: all).",
    "ImageBudget.filters_scale": "Multiply every model's number of filters by this factor in (0, 1] (rounded, at least 1): "
                                 "a CPU stand-in; the parameter counts then no longer match the paper's (omit: 1).",
}


# Budget keys of the suite files (plain TOML tables, not dataclasses): (key, type, default).
_TOY_BUDGET = [("note", "string", "the budget's name"), ("repeats", "integer", "the experiment's"),
               ("epochs", "integer", "the experiment's"), ("max_iterations", "integer", "the experiment's")]
_IMAGE_BUDGET = [("note", "string", "the budget's name"), ("repeats", "integer", "the config's"),
                 ("epochs", "integer", "the config's"), ("max_iterations", "integer", "none"),
                 ("batch_size", "integer", "the config's"), ("train_subset", "integer", "all"),
                 ("test_subset", "integer", "all"), ("filters_scale", "float", "1")]

_SECTIONS: list[tuple[str, type, str]] = [
    ("Top level", ExperimentConfig, ""),
    ("`[train]`", TrainSpec, ""),
    ("`[solver]`", SolverConfig, ""),
    ("`[[models]]`", ModelSpec, f"`kind` is one of {', '.join(MODEL_KINDS)}."),
    ("`[artifacts]`", ArtifactSpec, ""),
]

_SEARCH_EXAMPLE = """```toml
# Before the repeats, train every combination of these values once per (dataset, model) for 10 epochs,
# keep the one with the lowest final training loss (written to runs/<dataset>/<model>/search.json),
# then run the repeats with it.
[search]
mode = "grid"          # or "random" with num_samples = 4
epochs = 10
space = { lr = [1e-3, 3e-3], hidden_dim = [16, 32] }
```"""


def _config_classes() -> list[type]:
    """Every dataclass whose fields are config keys."""
    return [ExperimentConfig, TrainSpec, SolverConfig, *DATASET_KINDS.values(), ModelSpec, SearchSpec, ArtifactSpec,
            ClaimSpec, TestSpec, Selector]


def documented_keys() -> list[str]:
    """Every "Section.key" the reference documents: each field of the schema's dataclasses and the budget keys."""
    keys = [f"{cls.__name__}.{f.name}" for cls in _config_classes() for f in dataclasses.fields(cls) if f.init]
    keys += [f"ToyBudget.{k}" for k, _, _ in _TOY_BUDGET] + [f"ImageBudget.{k}" for k, _, _ in _IMAGE_BUDGET]
    return keys


def missing_meanings() -> list[str]:
    """Keys of the schema with no entry in `MEANINGS` (should be empty)."""
    return [key for key in documented_keys() if key not in MEANINGS]


def stale_meanings() -> list[str]:
    """Entries of `MEANINGS` that name no key of the schema (should be empty)."""
    known = set(documented_keys())
    return sorted(key for key in MEANINGS if key not in known)


def _type_text(tp: Any) -> str:
    """A TOML-oriented name of a type hint ("integer", "[number, number]", "table", ...)."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin in (Union, types.UnionType):
        rest = [a for a in args if a is not type(None)]
        text = " or ".join(_type_text(a) for a in rest)
        return f"{text}, optional" if len(rest) < len(args) else text
    if origin is tuple:
        if args and args[-1] is Ellipsis:
            return "array of tables"
        return "[" + ", ".join(_type_text(a) for a in args) + "]"
    if origin in (dict,) or tp is dict:
        return "table"
    if dataclasses.is_dataclass(tp):
        return "table"
    return {int: "integer", float: "number", str: "string", bool: "boolean"}.get(tp, getattr(tp, "__name__", str(tp)))


def _value_text(value: Any) -> str:
    """A default value as it would be written in TOML."""
    if value is None:
        return "none (omit the key)"
    if isinstance(value, bool):
        return "`true`" if value else "`false`"
    if isinstance(value, str):
        return f'`"{value}"`' if value else '`""`'
    if isinstance(value, float):
        return f"`{value:g}`"
    if isinstance(value, (tuple, list)):
        return "`[" + ", ".join(_value_text(v).strip("`") for v in value) + "]`"
    if isinstance(value, dict):
        return "`{}`" if not value else f"`{value}`"
    if dataclasses.is_dataclass(value):
        return "see its table"
    return f"`{value}`"


def _default_text(f: dataclasses.Field) -> str:  # type: ignore[type-arg]
    if f.default is not dataclasses.MISSING:
        return _value_text(f.default)
    if f.default_factory is not dataclasses.MISSING:
        return _value_text(f.default_factory())
    return "**required**"


def _escape(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _field_table(cls: type, *, skip: tuple[str, ...] = ()) -> list[str]:
    """Markdown table rows (key, type, default, meaning) of a dataclass's fields."""
    hints = typing.get_type_hints(cls)
    rows = ["| key | type | default | meaning |", "|---|---|---|---|"]
    for f in dataclasses.fields(cls):
        if not f.init or f.name in skip:
            continue
        meaning = MEANINGS.get(f"{cls.__name__}.{f.name}", "(no meaning documented)")
        rows.append(f"| `{f.name}` | {_escape(_type_text(hints[f.name]))} | {_escape(_default_text(f))} | {_escape(meaning)} |")
    return rows


def _budget_table(section: str, keys: list[tuple[str, str, str]], *, prefix: str = "") -> list[str]:
    """Markdown table rows of a suite's budget keys; `prefix` is put before every key but `note`."""
    rows = ["| key | type | default | meaning |", "|---|---|---|---|"]
    for k, tp, default in keys:
        name = k if k == "note" else f"{prefix}{k}"
        rows.append(f"| `{name}` | {tp} | {default} | {_escape(MEANINGS.get(f'{section}.{k}', '(no meaning documented)'))} |")
    return rows


#: A complete experiment with a claim (docs/config.md shows it; tests/test_docgen.py runs it).
CLAIM_EXAMPLE = """
name = "my_spheres"
description = "NODE vs ANODE on concentric spheres in 2-D, with my own claim."
seed = 3
repeats = 3

[train]
epochs = 2
batch_size = 64

[[datasets]]
kind = "spheres"
name = "spheres 2d"
dim = 2
num_points_inner = 128
num_points_outer = 256

[[models]]
name = "NODE"
role = "baseline"
hidden_dim = 16

[[models]]
name = "ANODE"
role = "augmented"
hidden_dim = 16
augment_dim = 1

[[claims]]
claim = "ANODE needs fewer function evaluations than NODE."
tests = [
  { metric = "mean_nfe_forward", better = { role = "augmented" }, worse = { role = "baseline" } },
  { metric = "final_loss", better = { role = "augmented" }, worse = { role = "baseline" } },
]
"""


def config_reference() -> str:
    """The whole reference as Markdown (the contents of `docs/config.md`)."""
    out = [
        "# Config file reference",
        "",
        ("<!-- Generated by `python -m anode.lab.docgen > docs/config.md` (or `anode config-docs --out "
         "docs/config.md`) from the config dataclasses; do not edit by hand. tests/test_docgen.py fails when it is stale. -->"),
        "",
        "An experiment is one TOML (or JSON) file: top-level keys, a `[train]` and a `[solver]` table, one",
        "`[[datasets]]` table per dataset, one `[[models]]` table per model, and optional `[search]` and",
        "`[artifacts]` tables. Files are data, never executed; an unknown key, a missing required key or a value",
        "of the wrong type is an error naming the key (`anode experiment FILE` exits with status 2 before any run).",
        "A key omitted takes its default. TOML has no null: \"none (omit the key)\" means leave the key out.",
        "Built-in experiments are in `src/anode/lab/configs/` (`anode experiment toy/spheres --out DIR` runs one).",
        "",
    ]
    for title, cls, note in _SECTIONS[:3]:
        out += [f"## {title}", "", *([note, ""] if note else []), *_field_table(cls), ""]
    out += ["## `[[datasets]]`", "",
            "Each dataset table has `kind`, one of " + ", ".join(f'`"{k}"`' for k in DATASET_KINDS)
            + ", and the keys of that kind:", ""]
    for kind, cls in DATASET_KINDS.items():
        out += [f"### `kind = \"{kind}\"`", "", *_field_table(cls), ""]
    for title, cls, note in _SECTIONS[3:]:
        out += [f"## {title}", "", *([note, ""] if note else []), *_field_table(cls), ""]
    out += ["## `[search]`", "",
            "Optional. A hyperparameter search run before the repeats, for every (dataset, model) pair: each",
            "candidate is trained once (seed of repeat 0), the candidate with the lowest final training loss",
            "wins (failed candidates rank last), and the repeats use it. Candidates and their losses are written",
            "to `runs/<dataset>/<model>/search.json`.", "",
            _SEARCH_EXAMPLE, "", *_field_table(SearchSpec), ""]
    out += ["## Claims of your own experiment", "",
            "An experiment file may declare `[[claims]]` tables (the schema below): `anode experiment FILE --out DIR`",
            "checks them before any run (a model role or dataset they cannot find is an error naming it), and its",
            "report judges them with the same evaluator and verdict rule as the paper's claims, each part of a claim",
            f"with its own verdict. An experiment's claims may test {', '.join(f'`{m}`' for m in EXPERIMENT_METRICS)}, and",
            "`experiment` is left out (the claim belongs to the file's experiment). A complete example:", "",
            "```toml", CLAIM_EXAMPLE.strip(), "```", ""]
    out += ["## Claims files (`configs/toy/claims.toml`, `configs/images/claims.toml`)", "",
            "The claims a reproduction report judges, as data: `[[claims]]` tables, each with a list of tests. One",
            "evaluator (`anode.lab.claims.evaluate_claims`) turns results into verdicts; models are picked by role:", "",
            "```toml",
            "[[claims]]",
            'claim = "ANODE reaches a lower training loss than NODE on g(x) in d = 1 and d = 2 (Fig. 7)."',
            'experiment = "spheres"',
            ('tests = [{ metric = "final_loss", datasets = ["spheres 1d", "spheres 2d"], '
             'better = { role = "augmented" }, worse = { role = "baseline" } }]'),
            "```", "",
            "### `[[claims]]`", "", *_field_table(ClaimSpec), "",
            "### A test (an inline table in `tests`)", "", *_field_table(TestSpec), "",
            "### A selector (`better`, `worse`, `model`)", "", *_field_table(Selector), ""]
    out += ["## Suite files (`configs/toy/suite.toml`, `configs/images/suite.toml`)", "",
            "A suite file lists the budgets of `anode reproduce toy|images`; it too is data only.", "",
            "Top-level keys: `title` (string, the report's title) and `experiments` (array of built-in experiment",
            "names: in the toy suite the experiments it runs, in order; in the image suite the claim experiments",
            "that `--experiment` offers besides `table1`). The image suite also has `[metrics]` with `nfe_blowup`",
            "(float: a run's NFE has blown up when one forward solve takes at least this many evaluations).", "",
            "### `[budgets.NAME]` of the toy suite", "",
            "`NAME` is what `--budget` selects (smoke, default, full). Besides `note`, each key is an experiment",
            "name with an inline table of overrides, e.g. `spheres = { repeats = 4, epochs = 20 }`; an",
            "experiment not named runs with its own settings:", "",
            *_budget_table("ToyBudget", _TOY_BUDGET, prefix="<experiment>."), "",
            "### `[budgets.NAME]` of the image suite", "",
            "`NAME` is what `--budget` selects (smoke, small, paper). The keys apply to the built-in config of",
            "the experiment (`configs/images/<dataset>.toml` for table1, `configs/images/<experiment>.toml` for a",
            "claim experiment); a sub-table `[budgets.NAME.<experiment>]` with the same keys overrides them for",
            "that claim experiment (its `note` too); `--repeats` and `--epochs` override both:", "",
            *_budget_table("ImageBudget", _IMAGE_BUDGET), ""]
    return "\n".join(out)


def main() -> int:
    """Print the reference to standard output."""
    sys.stdout.write(config_reference())
    return 0


if __name__ == "__main__":
    sys.exit(main())
