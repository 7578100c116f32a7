"""Experiment configuration files (TOML or JSON, never executed), validated on load."""

from __future__ import annotations

import dataclasses
import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import tomllib

from anode.config import SolverConfig
from anode.data.images import DATASET_NAMES, NORMALIZATIONS
from anode.lab.experiments.schema import ConfigError, build
from anode.models.augment import AUGMENTATIONS
from anode.models.cnf import AUGMENTED_POSTERIORS
from anode.models.fields import NON_LINEARITIES
from anode.training import LOSSES

__all__ = [
    "ArtifactSpec", "ExperimentConfig", "G1DSpec", "ImageSpec", "ModelSpec", "SearchSpec", "SinesSpec",
    "SpheresSpec", "TrainSpec", "load_config",
]

MODEL_KINDS = ("odenet", "flow", "resnet", "convodenet", "convresnet")
ODE_KINDS = ("odenet", "flow", "convodenet")
#: What a model stands for in the claims: a NODE (p = 0), an ANODE (p > 0), a non-ODE reference
#: (ResNet), or a variant the claims do not test (e.g. extra models of a sweep).
ROLES = ("baseline", "augmented", "reference", "variant")
SEARCHABLE = ("lr", "hidden_dim", "augment_dim", "weight_decay")


def _positive(name: str, value: float | int | None) -> None:
    if value is not None and not (math.isfinite(value) and value > 0):
        raise ValueError(f"{name} must be positive, got {value!r}")


@dataclass(frozen=True)
class G1DSpec:
    """g1d: x = +-1 -> x (identity) or -x (`target_flip`)."""

    name: str
    num_points: int = 200
    target_flip: bool = True
    noise_scale: float = 0.0

    def __post_init__(self) -> None:
        if self.num_points < 1:
            raise ValueError(f"num_points must be >= 1, got {self.num_points}")
        if self.noise_scale < 0:
            raise ValueError(f"noise_scale must be >= 0, got {self.noise_scale}")


@dataclass(frozen=True)
class SpheresSpec:
    """Concentric spheres g(x); `holdout_angle` removes that angular slice from training and evaluates on it."""

    name: str
    dim: int = 2
    inner_range: tuple[float, float] = (0.0, 0.5)
    outer_range: tuple[float, float] = (1.0, 1.5)
    num_points_inner: int = 1000
    num_points_outer: int = 2000
    holdout_angle: tuple[float, float] | None = None

    def __post_init__(self) -> None:
        if self.dim < 1:
            raise ValueError(f"dim must be >= 1, got {self.dim}")
        if self.num_points_inner < 1 or self.num_points_outer < 1:
            raise ValueError(f"num_points_inner and num_points_outer must be >= 1, got {self.num_points_inner} and {self.num_points_outer}")
        for label, (low, high) in (("inner_range", self.inner_range), ("outer_range", self.outer_range)):
            if not 0 <= low < high:
                raise ValueError(f"{label} must satisfy 0 <= r_min < r_max, got {[low, high]}")
        if self.outer_range[0] < self.inner_range[1]:
            raise ValueError(
                f"outer_range {list(self.outer_range)} must start at or beyond the end of inner_range {list(self.inner_range)}"
            )
        if self.holdout_angle is not None:
            if self.dim < 2:
                raise ValueError(f"holdout_angle needs dim >= 2, got dim = {self.dim}")
            start, end = self.holdout_angle
            if not 0 <= start < end <= 2 * math.pi:
                raise ValueError(f"holdout_angle must satisfy 0 <= start < end <= 2*pi, got {list(self.holdout_angle)}")


@dataclass(frozen=True)
class SinesSpec:
    """The separable shifted-sines data."""

    name: str
    dim: int = 2
    shift: float = 1.4
    num_points_upper: int = 500
    num_points_lower: int = 500
    noise_scale: float = 0.1

    def __post_init__(self) -> None:
        if self.dim < 1:
            raise ValueError(f"dim must be >= 1, got {self.dim}")
        if self.num_points_upper < 0 or self.num_points_lower < 0 or self.num_points_upper + self.num_points_lower == 0:
            raise ValueError(
                "num_points_upper and num_points_lower must be >= 0 with a positive sum, "
                f"got {self.num_points_upper} and {self.num_points_lower}"
            )
        if self.noise_scale < 0:
            raise ValueError(f"noise_scale must be >= 0, got {self.noise_scale}")


@dataclass(frozen=True)
class ImageSpec:
    """An image dataset read by `anode.data.images` (`dataset`: mnist, idx, cifar10, svhn, tinyimagenet, folder)."""

    name: str
    dataset: str = "mnist"
    data_dir: str | None = None
    normalization: str = "none"
    train_subset: int | None = None
    test_subset: int | None = None
    options: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        key = self.dataset.lower().replace("-", "").replace("_", "")
        if key not in DATASET_NAMES:
            raise ValueError(f"unknown dataset {self.dataset!r}; valid choices: {list(DATASET_NAMES)}")
        if self.normalization not in NORMALIZATIONS:
            raise ValueError(f"unknown normalization {self.normalization!r}; valid choices: {list(NORMALIZATIONS)}")
        _positive("train_subset", self.train_subset)
        _positive("test_subset", self.test_subset)


DATASET_KINDS: dict[str, type] = {"g1d": G1DSpec, "spheres": SpheresSpec, "sines": SinesSpec, "image": ImageSpec}
DatasetSpec = G1DSpec | SpheresSpec | SinesSpec | ImageSpec


def _check_role(name: str, role: str, kind: str, augment_dim: int) -> None:
    if role not in ROLES:
        raise ValueError(f"model {name!r}: unknown role {role!r}; valid choices: {list(ROLES)}")
    if role == "baseline" and (kind not in ODE_KINDS or augment_dim != 0):
        raise ValueError(f"model {name!r}: role 'baseline' is a NODE (kind in {list(ODE_KINDS)}, augment_dim = 0), "
                         f"got kind {kind!r} with augment_dim {augment_dim}")
    if role == "augmented" and (kind not in ODE_KINDS or augment_dim < 1):
        raise ValueError(f"model {name!r}: role 'augmented' is an ANODE (kind in {list(ODE_KINDS)}, augment_dim >= 1), "
                         f"got kind {kind!r} with augment_dim {augment_dim}")
    if role == "reference" and kind in ODE_KINDS:
        raise ValueError(f"model {name!r}: role 'reference' is a non-ODE model (resnet, convresnet), got kind {kind!r}")


@dataclass(frozen=True)
class ModelSpec:
    """One model of an experiment.

    `kind`: "odenet" (NODE/ANODE with a linear readout), "flow" (the ODE flow alone: prediction =
    the first d coordinates of h(1); needs targets of the data's dimension d), "resnet", "convodenet", "convresnet".
    `hidden_dim` is the MLP width or the number of conv filters. `match_parameters` names another model whose parameter count
    this model's width (`hidden_dim`, ignored then) is chosen to match, for any kind (e.g. a
    "learned" ANODE matched to a "zeros" one). `lr`, `weight_decay` and the regulariser weights
    `kinetic_energy`/`jacobian_norm` override the experiment's training values for this model.
    `augmentation` (ODE kinds) is how h(0) is built from x: "zeros" (the paper), "learned",
    "second_order" or "second_order_learned" (these two need augment_dim = the data's dimension or
    channels); see `anode.models.augment`.
    `role` is what the model stands for in claims: "baseline" (a NODE, p = 0), "augmented" (an
    ANODE, p > 0), "reference" (a non-ODE model such as a ResNet) or "variant" (not tested by
    claims); claims find models by role, never by name.
    """

    name: str
    role: str | None = None
    kind: str = "odenet"
    hidden_dim: int = 32
    augment_dim: int = 0
    time_dependent: bool = True
    non_linearity: str = "relu"
    num_layers: int = 1
    match_parameters: str | None = None
    lr: float | None = None
    weight_decay: float | None = None
    augmentation: str = "zeros"
    kinetic_energy: float | None = None
    jacobian_norm: float | None = None

    def __post_init__(self) -> None:
        if self.kind not in MODEL_KINDS:
            raise ValueError(f"unknown model kind {self.kind!r}; valid choices: {list(MODEL_KINDS)}")
        if self.augmentation not in AUGMENTATIONS:
            raise ValueError(f"model {self.name!r}: unknown augmentation {self.augmentation!r}; "
                             f"valid choices: {list(AUGMENTATIONS)}")
        if self.augmentation != "zeros" and self.kind not in ODE_KINDS:
            raise ValueError(f"model {self.name!r}: augmentation {self.augmentation!r} needs an ODE kind "
                             f"{list(ODE_KINDS)}, got kind {self.kind!r}")
        if self.augmentation != "zeros" and self.augment_dim < 1:
            raise ValueError(f"model {self.name!r}: augmentation {self.augmentation!r} needs augment_dim >= 1, "
                             f"got {self.augment_dim}")
        if self.role is not None:
            _check_role(self.name, self.role, self.kind, self.augment_dim)
        if self.non_linearity not in NON_LINEARITIES:
            raise ValueError(f"unknown non_linearity {self.non_linearity!r}; valid choices: {sorted(NON_LINEARITIES)}")
        if self.match_parameters is not None and self.match_parameters == self.name:
            raise ValueError(f"model {self.name!r}: match_parameters names the model itself")
        for name in ("hidden_dim", "num_layers"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.augment_dim < 0:
            raise ValueError(f"augment_dim must be >= 0, got {self.augment_dim}")
        _positive("lr", self.lr)
        for name in ("weight_decay", "kinetic_energy", "jacobian_norm"):
            value = getattr(self, name)
            if value is not None and not (math.isfinite(value) and value >= 0):
                raise ValueError(f"model {self.name!r}: {name} must be a finite number >= 0, got {value!r}")


@dataclass(frozen=True)
class TrainSpec:
    """Training settings shared by the models (the paper's defaults); `kinetic_energy` and
    `jacobian_norm` are the regulariser weights of `anode.TrainConfig` (0: off).
    `checkpoint_every` (epochs) is bookkeeping: None writes a checkpoint every epoch on image data
    and about every 500 iterations on toy data, whose epochs take milliseconds."""

    epochs: int = 50
    lr: float = 1e-3
    batch_size: int = 64
    weight_decay: float = 0.0
    loss: str = "huber"
    max_iterations: int | None = None
    eval_every: int = 1
    kinetic_energy: float = 0.0
    jacobian_norm: float = 0.0
    checkpoint_every: int | None = None

    def __post_init__(self) -> None:
        if self.loss not in LOSSES:
            raise ValueError(f"unknown loss {self.loss!r}; valid choices: {list(LOSSES)}")
        for name in ("kinetic_energy", "jacobian_norm"):
            if not (math.isfinite(getattr(self, name)) and getattr(self, name) >= 0):
                raise ValueError(f"{name} must be a finite weight >= 0, got {getattr(self, name)!r}")
        for name in ("epochs", "batch_size", "eval_every"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        _positive("lr", self.lr)
        _positive("max_iterations", self.max_iterations)
        _positive("checkpoint_every", self.checkpoint_every)
        if self.weight_decay < 0:
            raise ValueError(f"weight_decay must be >= 0, got {self.weight_decay}")


@dataclass(frozen=True)
class SearchSpec:
    """Hyperparameter search before the repeats: best setting by final training loss.

    `space` maps a hyperparameter (lr, hidden_dim, augment_dim, weight_decay) to candidate values.
    `mode` "grid" tries every combination; "random" draws `num_samples` of them (seeded).
    `epochs` shortens search runs (None: as in training).
    """

    space: dict[str, Any]
    mode: str = "grid"
    num_samples: int = 4
    epochs: int | None = None

    def __post_init__(self) -> None:
        if self.mode not in ("grid", "random"):
            raise ValueError(f"unknown search mode {self.mode!r}; valid choices: ['grid', 'random']")
        if not self.space:
            raise ValueError("search.space is empty: give candidate values, e.g. lr = [1e-3, 3e-3]")
        for key, values in self.space.items():
            if key not in SEARCHABLE:
                raise ValueError(f"cannot search over {key!r}; searchable: {list(SEARCHABLE)}")
            if not isinstance(values, list) or not values:
                raise ValueError(f"search.space.{key} must be a non-empty list, got {values!r}")
        if self.num_samples < 1:
            raise ValueError(f"num_samples must be >= 1, got {self.num_samples}")
        if self.epochs is not None and self.epochs < 1:
            raise ValueError(f"epochs must be >= 1, got {self.epochs}")


@dataclass(frozen=True)
class ArtifactSpec:
    """What to record beyond histories (first repeat only), for the figures.

    `trajectories`: number of training points whose trajectories h(t) are saved (0: none), on
    `timesteps` times. `feature_snapshots`: how many snapshots of the features h(1) of those points
    to take during training. `input_map`: grid resolution of the model's output over the input
    plane/line (0: none). `vector_field`: save the 1-D vector field on a (t, h) grid when d + p = 1.
    """

    trajectories: int = 0
    timesteps: int = 20
    feature_snapshots: int = 0
    input_map: int = 0
    vector_field: bool = False

    def __post_init__(self) -> None:
        for name in ("trajectories", "feature_snapshots", "input_map"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        if self.timesteps < 2:
            raise ValueError(f"timesteps must be >= 2, got {self.timesteps}")
        if self.input_map == 1:
            raise ValueError("input_map is a grid resolution: use 0 (none) or >= 2")


#: Metrics a claim may test: name -> (what it is, whether lower values are better).
METRICS: dict[str, tuple[str, bool]] = {
    "final_loss": ("last-epoch training loss", True),
    "eval_loss": ("evaluation loss", True),
    "test_log_likelihood": ("test log-likelihood in nats (exact for a CNF, the importance-weighted bound for an "
                            "augmented CNF)", False),
    "eval_accuracy": ("test accuracy", False),
    "mean_nfe_forward": ("forward NFE averaged over training", True),
    "final_nfe_forward": ("last-epoch forward NFE", True),
    "nfe_growth": ("NFE growth (mean forward NFE of the last tenth of training over the first tenth)", True),
    "iterations_to_level": ("iterations to reach the loss level (censored at the budget when never reached)", True),
    "nfe_at_level": ("forward NFE when the loss level is first reached", True),
    "max_nfe_forward": ("largest forward NFE of any iteration, failed runs included up to their failure", True),
    "unstable": (("share of runs that became unstable (failed in the solver, non-finite loss, loss back above its "
                  "starting value, or forward NFE at or above the blow-up threshold); failed runs included"), True),
}

@dataclass(frozen=True)
class Selector:
    """Picks one model of an experiment by role (and, to disambiguate, p, weight decay, augmentation, regulariser).

    `weight_decay` and `kinetic_energy` are matched against the model's effective values (its own,
    else the experiment's). `dataset` fixes the dataset for this side of a comparison (e.g. the same model on
    two datasets); otherwise the test's `datasets` apply.
    """

    role: str
    augment_dim: int | None = None
    weight_decay: float | None = None
    augmentation: str | None = None
    kinetic_energy: float | None = None
    dataset: str | None = None

    def __post_init__(self) -> None:
        if self.role not in ROLES:
            raise ValueError(f"unknown role {self.role!r}; valid choices: {list(ROLES)}")
        # an ODE model's augmentation, or the q(a | x) of an augmented CNF (`anode reproduce cnf`)
        if self.augmentation is not None and self.augmentation not in AUGMENTATIONS + AUGMENTED_POSTERIORS:
            raise ValueError(f"unknown augmentation {self.augmentation!r}; valid choices: "
                             f"{list(AUGMENTATIONS + AUGMENTED_POSTERIORS)}")

    def matches(self, model: ModelSpec, config: ExperimentConfig) -> bool:
        wd = model.weight_decay if model.weight_decay is not None else config.train.weight_decay
        ke = model.kinetic_energy if model.kinetic_energy is not None else config.train.kinetic_energy
        same = lambda a, b: math.isclose(a, b, rel_tol=0, abs_tol=1e-15)  # noqa: E731
        return (model.role == self.role
                and (self.augment_dim is None or model.augment_dim == self.augment_dim)
                and (self.weight_decay is None or same(wd, self.weight_decay))
                and (self.augmentation is None or model.augmentation == self.augmentation)
                and (self.kinetic_energy is None or same(ke, self.kinetic_energy)))

    def describe(self) -> str:
        extra = [f"p = {self.augment_dim}"] if self.augment_dim is not None else []
        extra += [f"weight decay {self.weight_decay:g}"] if self.weight_decay is not None else []
        extra += [f"{self.augmentation} augmentation"] if self.augmentation is not None else []
        extra += [f"kinetic energy {self.kinetic_energy:g}"] if self.kinetic_energy is not None else []
        return self.role + (f" ({', '.join(extra)})" if extra else "")


@dataclass(frozen=True)
class TestSpec:
    """One statistical test of a claim.

    A comparison gives `better` and `worse`: the claim is that `better`'s metric is better (lower,
    or higher for accuracy) than `worse`'s, by `factor` (2 means "below half of"), or, with a
    `margin`, that it is not worse by `margin` or more (a non-inferiority test). A threshold gives
    `model` and one of `below`/`above`. `datasets` lists where the test runs (each must hold); with
    neither `datasets` nor selector datasets, it runs on every dataset of the experiment.
    """

    __test__ = False  # not a pytest test class

    metric: str
    datasets: tuple[str, ...] = ()
    better: Selector | None = None
    worse: Selector | None = None
    factor: float = 1.0
    margin: float = 0.0
    model: Selector | None = None
    below: float | None = None
    above: float | None = None

    def __post_init__(self) -> None:
        if self.metric not in METRICS:
            raise ValueError(f"unknown metric {self.metric!r}; valid choices: {list(METRICS)}")
        compare = self.better is not None or self.worse is not None
        threshold = self.model is not None or self.below is not None or self.above is not None
        if compare == threshold:
            raise ValueError("a test is either a comparison (better, worse) or a threshold (model with below or above)")
        if compare and (self.better is None or self.worse is None):
            raise ValueError("a comparison needs both better and worse")
        if threshold and (self.model is None or (self.below is None) == (self.above is None)):
            raise ValueError("a threshold test needs model and exactly one of below/above")
        if not (math.isfinite(self.factor) and self.factor >= 1):
            raise ValueError(f"factor must be a finite number >= 1, got {self.factor!r}")
        if isinstance(self.margin, bool) or not isinstance(self.margin, (int, float)) or not (
                math.isfinite(self.margin) and self.margin >= 0):
            raise ValueError(f"margin must be a finite number >= 0 (in the metric's units), got {self.margin!r}")
        if self.margin and (self.factor != 1 or not compare):
            raise ValueError(f"margin ({self.margin!r}) applies to a comparison without a factor: drop factor "
                             f"({self.factor!r}) or margin, or use below/above for a threshold")
        sides = self.sides
        if self.datasets and any(s.dataset is not None for s in sides):
            raise ValueError("give datasets for the test or a dataset on each selector, not both")
        if any(s.dataset is None for s in sides) and any(s.dataset is not None for s in sides):
            raise ValueError("give a dataset on every selector of the test, or on none")

    @property
    def is_comparison(self) -> bool:
        return self.better is not None

    @property
    def sides(self) -> list[Selector]:
        """The selectors of the test: better and worse, or the threshold's model."""
        return [s for s in (self.better, self.worse, self.model) if s is not None]


@dataclass(frozen=True)
class ClaimSpec:
    """A claim of the paper: its text, the experiment it rests on (None: the only one) and its tests."""

    claim: str
    tests: tuple[TestSpec, ...]
    experiment: str | None = None

    def __post_init__(self) -> None:
        if not self.tests:
            raise ValueError("a claim needs at least one test")


def select_model(sel: Selector, config: ExperimentConfig) -> ModelSpec | None:
    """The one model of `config` that `sel` picks (None if none).

    Raises:
        ConfigError: the selector matches several models.
    """
    found = [m for m in config.models if sel.matches(m, config)]
    if len(found) > 1:
        raise ConfigError(f"experiment {config.name!r}: selector {sel.describe()} matches several models "
                          f"{[m.name for m in found]}; add augment_dim or weight_decay to the selector, or give the extra "
                          "models role = 'variant'")
    return found[0] if found else None


#: The metrics every experiment's aggregate has (`anode.lab.experiments.aggregate_experiment`), so that a claim
#: in an experiment file may test them; the other `METRICS` come from the reproductions' extra analyses.
EXPERIMENT_METRICS = ("final_loss", "eval_loss", "eval_accuracy", "mean_nfe_forward", "final_nfe_forward", "nfe_growth")


def check_claim(claim: ClaimSpec, config: ExperimentConfig) -> None:
    """Check that `claim` finds its datasets and models in `config`.

    Raises:
        ConfigError: naming the claim and the dataset or model (role) it cannot find, or a selector that
            matches several models.
    """
    names = {d.name for d in config.datasets}
    for test in claim.tests:
        for ds in test.datasets + tuple(s.dataset for s in test.sides if s.dataset):
            if ds not in names:
                raise ConfigError(f"claim {claim.claim!r}: experiment {config.name!r} has no dataset {ds!r}; datasets: {sorted(names)}")
        for sel in test.sides:
            if select_model(sel, config) is None:
                raise ConfigError(f"claim {claim.claim!r}: experiment {config.name!r} has no model with role {sel.describe()}; "
                                  f"models: {[(m.name, m.role) for m in config.models]}")


@dataclass(frozen=True)
class ExperimentConfig:
    """A whole experiment: models x datasets x repeats, optional search, artifacts for figures, and the claims
    its report judges (`[[claims]]`, the schema of the built-in claims files; see `anode.lab.claims`)."""

    name: str
    datasets: tuple[DatasetSpec, ...]
    models: tuple[ModelSpec, ...]
    description: str = ""
    paper: str = ""
    seed: int = 0
    repeats: int = 1
    train: TrainSpec = TrainSpec()
    solver: SolverConfig = SolverConfig()
    search: SearchSpec | None = None
    artifacts: ArtifactSpec = ArtifactSpec()
    claims: tuple[ClaimSpec, ...] = ()

    def __post_init__(self) -> None:
        if self.repeats < 1:
            raise ValueError(f"repeats must be >= 1, got {self.repeats}")
        for label, items in (("datasets", self.datasets), ("models", self.models)):
            names = [item.name for item in items]
            if not names:
                raise ValueError(f"{label} is empty: the experiment needs at least one")
            if len(set(names)) != len(names):
                raise ValueError(f"{label} names must be unique, got {names}")
        names = {m.name for m in self.models}
        for m in self.models:
            if m.match_parameters is not None and m.match_parameters not in names:
                raise ValueError(
                    f"model {m.name!r}: match_parameters {m.match_parameters!r} is not a model of this experiment {sorted(names)}"
                )
        for m in self.models:  # chains of matches must end at a model with its own width
            chain = [m.name]
            while (target := self.model(chain[-1]).match_parameters) is not None:
                if target in chain:
                    raise ValueError(f"match_parameters forms a cycle: {' -> '.join([*chain, target])}")
                chain.append(target)
        if self.search is not None and "augment_dim" in self.search.space:
            for m in self.models:  # a searched p must not turn a declared NODE into an ANODE or back
                for p in self.search.space["augment_dim"]:
                    if m.role is not None:
                        _check_role(m.name, m.role, m.kind, p)
        for claim in self.claims:
            if claim.experiment is not None and claim.experiment != self.name:
                raise ConfigError(f"claim {claim.claim!r}: experiment = {claim.experiment!r}, but a claim in an experiment file "
                                  f"belongs to that experiment ({self.name!r}): leave `experiment` out")
            metrics = sorted({t.metric for t in claim.tests} - set(EXPERIMENT_METRICS))
            if metrics:
                raise ConfigError(f"claim {claim.claim!r}: metric {metrics[0]!r} is computed by the reproductions only; "
                                  f"an experiment's claims may test {list(EXPERIMENT_METRICS)}")
            check_claim(claim, self)

    def model(self, name: str) -> ModelSpec:
        return next(m for m in self.models if m.name == name)

    def with_budget(self, *, repeats: int | None = None, epochs: int | None = None,
                    max_iterations: int | None = None) -> ExperimentConfig:
        """A copy with fewer repeats/epochs/iterations (None keeps the configured value)."""
        train = dataclasses.replace(
            self.train,
            epochs=epochs if epochs is not None else self.train.epochs,
            max_iterations=max_iterations if max_iterations is not None else self.train.max_iterations,
        )
        return dataclasses.replace(self, repeats=repeats if repeats is not None else self.repeats, train=train)

    def to_dict(self) -> dict[str, Any]:
        """The config as plain data (what `experiment.json` holds; `parse_config` reads it back).

        `solver.sample_failure` is written only when it is not its default ("skip"): a setting added
        after reports were committed leaves their `experiment.json` as it was, as it leaves run
        fingerprints (`fingerprint._solver_part`). Those files, which lack the key, were made under
        "raise" with batch control, where the two policies are the same (a failure stops the batch),
        so reading them back with the default "skip" changes nothing.
        """
        out = dataclasses.asdict(self)
        if out["solver"].get("sample_failure") == "skip":
            del out["solver"]["sample_failure"]
        kinds = {cls: kind for kind, cls in DATASET_KINDS.items()}
        out["datasets"] = [{"kind": kinds[type(d)], **dataclasses.asdict(d)} for d in self.datasets]
        return out


def parse_config(data: dict[str, Any], *, where: str = "config") -> ExperimentConfig:
    """Validate parsed TOML/JSON data into an `ExperimentConfig`.

    Raises:
        ConfigError: naming the offending key.
    """
    if not isinstance(data, dict):
        raise ConfigError(f"{where} must be a table")
    data = dict(data)
    raw_datasets = data.pop("datasets", None)
    if not isinstance(raw_datasets, list) or not raw_datasets:
        raise ConfigError(f"{where}.datasets must be a non-empty list of tables ([[datasets]] in TOML)")
    datasets = []
    for i, table in enumerate(raw_datasets):
        if not isinstance(table, dict):
            raise ConfigError(f"{where}.datasets[{i}] must be a table")
        table = dict(table)
        kind = table.pop("kind", None)
        if kind not in DATASET_KINDS:
            raise ConfigError(f"{where}.datasets[{i}].kind must be one of {list(DATASET_KINDS)}, got {kind!r}")
        datasets.append(build(DATASET_KINDS[kind], table, f"{where}.datasets[{i}]"))
    data["datasets"] = datasets
    return build(ExperimentConfig, data, where)


def load_config(path: str | os.PathLike[str]) -> ExperimentConfig:
    """Read an experiment from a `.toml` or `.json` file (data only; nothing is executed).

    Raises:
        FileNotFoundError: no such file.
        ConfigError: unsupported extension, a syntax error, or invalid contents (the key is named).
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no experiment config at {path}")
    text = path.read_text(encoding="utf-8")
    try:
        if path.suffix == ".toml":
            data = tomllib.loads(text)
        elif path.suffix == ".json":
            data = json.loads(text)
        else:
            raise ConfigError(f"{path}: config files must end in .toml or .json, got {path.suffix!r}")
    except (tomllib.TOMLDecodeError, json.JSONDecodeError) as err:
        raise ConfigError(f"{path}: cannot parse: {err}") from err
    return parse_config(data, where=path.name)
