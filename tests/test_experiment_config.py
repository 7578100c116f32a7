"""Tests of experiment configs: validation errors that name the key, built-in configs, budgets, parameter counts."""

from __future__ import annotations

import copy
import dataclasses
import json
import re
from importlib import resources
from pathlib import Path

import pytest
import torch

from anode.config import SolverConfig
from anode.lab.experiments import ConfigError, ExperimentConfig, load_config, parse_config
from anode.lab.experiments.builders import PreparedData, build_model
from anode.lab.experiments.config import ImageSpec, ModelSpec, SpheresSpec
from anode.models import count_parameters

CONFIG_ROOT = Path(str(resources.files("anode.lab") / "configs"))
BUILTIN = sorted(p for p in CONFIG_ROOT.glob("*/*.toml") if p.stem not in ("suite", "claims"))

MINIMAL = {
    "name": "tiny",
    "datasets": [{"kind": "spheres", "name": "s2", "dim": 2, "num_points_inner": 10, "num_points_outer": 20}],
    "models": [{"name": "NODE", "kind": "odenet", "hidden_dim": 8},
               {"name": "ANODE", "kind": "odenet", "hidden_dim": 8, "augment_dim": 1}],
}

TOML_OK = """
name = "tiny"
repeats = 3

[train]
epochs = 2
lr = 0.01
max_iterations = 4

[solver]
method = "rk4"
step_size = 0.25

[[datasets]]
kind = "spheres"
name = "s2"
dim = 2
inner_range = [0.0, 0.5]
num_points_inner = 10
num_points_outer = 20

[[models]]
name = "NODE"
kind = "odenet"
hidden_dim = 8

[artifacts]
trajectories = 5
"""


def with_changes(path: str, value: object) -> dict:
    """MINIMAL with `value` set at a dotted path (list indices as integers), e.g. "models.0.kind"."""
    data = copy.deepcopy(MINIMAL)
    parts = path.split(".")
    node = data
    for part in parts[:-1]:
        node = node[int(part)] if isinstance(node, list) else node.setdefault(part, {})
    node[int(parts[-1]) if isinstance(node, list) else parts[-1]] = value
    return data


# ----------------------------------------------------------------------------- files


def test_toml_file_loads_with_every_section(tmp_path):
    path = tmp_path / "exp.toml"
    path.write_text(TOML_OK)
    cfg = load_config(path)
    assert isinstance(cfg, ExperimentConfig)
    assert cfg.name == "tiny" and cfg.repeats == 3
    assert cfg.train.epochs == 2 and cfg.train.lr == 0.01 and cfg.train.max_iterations == 4
    assert cfg.solver == SolverConfig(method="rk4", step_size=0.25)
    (ds,) = cfg.datasets
    assert isinstance(ds, SpheresSpec) and ds.inner_range == (0.0, 0.5) and ds.num_points_outer == 20
    assert cfg.models == (ModelSpec(name="NODE", kind="odenet", hidden_dim=8),)
    assert cfg.artifacts.trajectories == 5
    assert cfg.search is None


def test_json_file_gives_the_same_config_as_toml(tmp_path):
    import tomllib

    (tmp_path / "exp.toml").write_text(TOML_OK)
    (tmp_path / "exp.json").write_text(json.dumps(tomllib.loads(TOML_OK)))
    assert load_config(tmp_path / "exp.json") == load_config(tmp_path / "exp.toml")


def test_to_dict_round_trips_through_json():
    cfg = parse_config({**MINIMAL, "search": {"space": {"lr": [1e-3, 1e-2]}},
                        "datasets": MINIMAL["datasets"] + [{"kind": "image", "name": "img", "options": {"a": 1}}]})
    assert parse_config(json.loads(json.dumps(cfg.to_dict()))) == cfg


def test_bad_extension(tmp_path):
    path = tmp_path / "exp.yaml"
    path.write_text("name: x\n")
    with pytest.raises(ConfigError, match=r"\.toml or \.json.*'\.yaml'"):
        load_config(path)


def test_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="no experiment config at .*nope.toml"):
        load_config(tmp_path / "nope.toml")


def test_toml_syntax_error_is_a_config_error(tmp_path):
    path = tmp_path / "broken.toml"
    path.write_text('name = "x"\n[train\nepochs = 3\n')
    with pytest.raises(ConfigError, match=r"broken\.toml: cannot parse"):
        load_config(path)
    assert issubclass(ConfigError, ValueError)


def test_json_syntax_error_is_a_config_error(tmp_path):
    path = tmp_path / "broken.json"
    path.write_text('{"name": "x",')
    with pytest.raises(ConfigError, match=r"broken\.json: cannot parse"):
        load_config(path)


# ----------------------------------------------------------------------------- unknown keys and types


@pytest.mark.parametrize(("data", "key", "valid"), [
    ({**MINIMAL, "bogus": 1}, "config.bogus", ["datasets", "models", "repeats", "train"]),
    (with_changes("train.epoch", 3), "config.train.epoch", ["epochs", "lr", "max_iterations"]),
    (with_changes("solver.tol", 1e-3), "config.solver.tol", ["atol", "method", "rtol"]),
    (with_changes("models.1.hiden_dim", 3), "config.models[1].hiden_dim", ["augment_dim", "hidden_dim"]),
    (with_changes("datasets.0.radius", 3), "config.datasets[0].radius", ["dim", "inner_range"]),
    (with_changes("artifacts.trajectory", 3), "config.artifacts.trajectory", ["input_map", "trajectories"]),
])
def test_unknown_key_names_full_path_and_lists_valid_keys(data, key, valid):
    with pytest.raises(ConfigError, match=re.escape(f"unknown key {key}; valid keys: [")) as info:
        parse_config(data)
    for name in valid:
        assert repr(name) in str(info.value)


def test_unknown_key_in_a_file_is_prefixed_by_the_file_name(tmp_path):
    path = tmp_path / "exp.toml"
    path.write_text(TOML_OK.replace("max_iterations = 4", "max_iteration = 4"))
    with pytest.raises(ConfigError, match=r"unknown key exp\.toml\.train\.max_iteration; valid keys: .*'max_iterations'"):
        load_config(path)


@pytest.mark.parametrize(("path", "value", "pattern"), [
    ("train.epochs", "ten", r"config\.train\.epochs must be an integer, got 'ten'"),
    ("repeats", 1.5, r"config\.repeats must be an integer, got 1\.5"),
    ("models.0.hidden_dim", True, r"config\.models\[0\]\.hidden_dim must be an integer, got True"),
    ("train.lr", "fast", r"config\.train\.lr must be a number, got 'fast'"),
    ("solver.adjoint", "yes", r"config\.solver\.adjoint must be a bool, got 'yes'"),
    ("name", 3, r"config\.name must be a str, got 3"),
    ("datasets.0.inner_range", [0.0], r"config\.datasets\[0\]\.inner_range must have 2 entries, got 1"),
    ("datasets.0.outer_range", "wide", r"config\.datasets\[0\]\.outer_range must be a list"),
    ("train", 5, r"config\.train must be a table"),
    ("models", {"name": "x"}, r"config\.models must be a list"),
])
def test_wrong_type_names_the_key(path, value, pattern):
    with pytest.raises(ConfigError, match=pattern):
        parse_config(with_changes(path, value))


def test_missing_required_keys():
    data = copy.deepcopy(MINIMAL)
    del data["models"][0]["name"]
    with pytest.raises(ConfigError, match=r"missing required key config\.models\[0\]\.name"):
        parse_config(data)
    with pytest.raises(ConfigError, match=r"config\.datasets must be a non-empty list"):
        parse_config({k: v for k, v in MINIMAL.items() if k != "datasets"})
    with pytest.raises(ConfigError, match=r"missing required key config\.name"):
        parse_config({k: v for k, v in MINIMAL.items() if k != "name"})


# ----------------------------------------------------------------------------- bad values


@pytest.mark.parametrize(("path", "value", "pattern"), [
    ("train.epochs", 0, r"config\.train: epochs must be >= 1, got 0"),
    ("train.batch_size", -1, r"batch_size must be >= 1"),
    ("train.lr", 0.0, r"config\.train: lr must be positive"),
    ("train.loss", "hinge", r"unknown loss 'hinge'; valid choices: \['huber', 'mse', 'cross_entropy'\]"),
    ("train.max_iterations", 0, r"max_iterations must be positive"),
    ("repeats", 0, r"repeats must be >= 1, got 0"),
    ("solver.method", "rk45", r"config\.solver: unknown ODE method 'rk45'; valid choices: .*dopri5"),
    ("solver.method", "euler", r"config\.solver: method 'euler' is fixed-step and needs step_size"),
    ("solver.rtol", -1.0, r"config\.solver: rtol must be a finite positive number"),
    ("models.0.kind", "transformer", r"config\.models\[0\]: unknown model kind 'transformer'; valid choices: \['odenet'"),
    ("models.0.hidden_dim", 0, r"config\.models\[0\]: hidden_dim must be >= 1"),
    ("models.1.augment_dim", -1, r"config\.models\[1\]: augment_dim must be >= 0"),
    ("models.0.match_parameters", "NODE", r"model 'NODE': match_parameters names the model itself"),
    ("models.0.augmentation", "ones", r"unknown augmentation 'ones'; valid choices: \['zeros', 'learned', 'second_order'"),
    ("models.0.augmentation", "learned", r"model 'NODE': augmentation 'learned' needs augment_dim >= 1, got 0"),
    ("train.kinetic_energy", -1.0, r"kinetic_energy must be a finite weight >= 0"),
    ("datasets.0.kind", "moons", r"config\.datasets\[0\]\.kind must be one of \['g1d', 'spheres', 'sines', 'image'\], got 'moons'"),
    ("datasets.0.kind", None, r"config\.datasets\[0\]\.kind must be one of"),
    ("search", {"space": {"epochs": [1, 2]}}, r"cannot search over 'epochs'; searchable: \['lr', 'hidden_dim'"),
    ("search", {"space": {}}, r"search\.space is empty"),
    ("search", {"space": {"lr": 1e-3}}, r"search\.space\.lr must be a non-empty list"),
    ("search", {"space": {"lr": [1e-3]}, "mode": "bayes"}, r"unknown search mode 'bayes'"),
])
def test_bad_value_is_rejected_with_its_name(path, value, pattern):
    with pytest.raises(ConfigError, match=pattern):
        parse_config(with_changes(path, value))


def test_holdout_angle_needs_two_dimensions():
    data = with_changes("datasets.0.dim", 1)
    data["datasets"][0]["holdout_angle"] = [0.0, 0.6]
    with pytest.raises(ConfigError, match=r"config\.datasets\[0\]: holdout_angle needs dim >= 2, got dim = 1"):
        parse_config(data)
    data["datasets"][0]["dim"] = 2
    assert parse_config(data).datasets[0].holdout_angle == (0.0, 0.6)


def test_match_parameters_must_name_a_model_of_the_experiment():
    data = copy.deepcopy(MINIMAL)
    data["models"].append({"name": "ResNet", "kind": "resnet", "match_parameters": "NOPE"})
    with pytest.raises(ConfigError,
                       match=r"model 'ResNet': match_parameters 'NOPE' is not a model of this experiment \['ANODE', 'NODE', 'ResNet'\]"):
        parse_config(data)
    data["models"][-1]["match_parameters"] = "NODE"
    assert parse_config(data).model("ResNet").match_parameters == "NODE"


def test_duplicate_names_are_rejected():
    data = copy.deepcopy(MINIMAL)
    data["models"][1]["name"] = "NODE"
    with pytest.raises(ConfigError, match=r"models names must be unique, got \['NODE', 'NODE'\]"):
        parse_config(data)
    data = copy.deepcopy(MINIMAL)
    data["datasets"].append(dict(data["datasets"][0]))
    with pytest.raises(ConfigError, match=r"datasets names must be unique"):
        parse_config(data)


def test_image_subsets_must_be_positive():
    data = {**MINIMAL, "datasets": [{"kind": "image", "name": "m", "train_subset": 0}]}
    with pytest.raises(ConfigError, match=r"config\.datasets\[0\]: train_subset must be positive"):
        parse_config(data)


# ----------------------------------------------------------------------------- built-in configs and budgets


def test_builtin_config_set_is_the_expected_one():
    names = {f"{p.parent.name}/{p.stem}" for p in BUILTIN}
    assert names >= {"toy/flow_g1d", "toy/spheres", "toy/generalisation", "toy/weight_decay",
                     "images/mnist", "images/idx", "images/cifar10", "images/svhn", "images/tinyimagenet"}


@pytest.mark.parametrize("path", BUILTIN, ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_every_builtin_config_loads(path):
    cfg = load_config(path)
    assert cfg.name == path.stem
    assert cfg.datasets and cfg.models and cfg.repeats >= 1
    if path.parent.name == "images":
        assert all(isinstance(d, ImageSpec) for d in cfg.datasets)
        assert cfg.train.loss == "cross_entropy"
        assert {m.kind for m in cfg.models} == {"convodenet"}
        if path.stem in ("mnist", "idx", "cifar10", "svhn", "tinyimagenet"):  # Table 1: NODE vs ANODE
            assert len(cfg.models) == 2 and cfg.models[0].augment_dim == 0 and cfg.models[1].augment_dim > 0
        else:  # a claim experiment of `anode reproduce images --experiment`: every model has a role
            assert all(m.role in ("baseline", "augmented") for m in cfg.models)


def test_with_budget_overrides_and_keeps():
    cfg = load_config(CONFIG_ROOT / "toy" / "spheres.toml")
    small = cfg.with_budget(repeats=2, epochs=3, max_iterations=7)
    assert (small.repeats, small.train.epochs, small.train.max_iterations) == (2, 3, 7)
    assert (cfg.repeats, cfg.train.epochs, cfg.train.max_iterations) == (20, 50, None)  # original untouched
    assert small.models == cfg.models and small.datasets == cfg.datasets and small.train.lr == cfg.train.lr
    assert cfg.with_budget() == cfg
    assert cfg.with_budget(epochs=4).repeats == 20
    with pytest.raises(ValueError, match="epochs must be >= 1"):
        cfg.with_budget(epochs=0)
    with pytest.raises(ValueError, match="repeats must be >= 1"):
        cfg.with_budget(repeats=0)


# ----------------------------------------------------------------------------- parameter counts

IMAGE_SHAPES = {"mnist": ((1, 28, 28), 10), "idx": ((1, 28, 28), 10), "cifar10": ((3, 32, 32), 10),
                "svhn": ((3, 32, 32), 10), "tinyimagenet": ((3, 64, 64), 200)}


def image_counts(name: str) -> dict[str, int]:
    cfg = load_config(CONFIG_ROOT / "images" / f"{name}.toml")
    shape, classes = IMAGE_SHAPES[name]
    data = PreparedData(shape, classes, False, torch.zeros(1, *shape), torch.zeros(1, dtype=torch.long))
    return {m.name: count_parameters(build_model(m, cfg, data, seed=0)) for m in cfg.models}


@pytest.mark.parametrize(("name", "expected"), [
    ("mnist", {"NODE": 84_395, "ANODE (p=5)": 84_816}),  # Table 1 / Appendix of the paper
    ("idx", {"NODE": 84_395, "ANODE (p=5)": 84_816}),
    ("cifar10", {"NODE": 172_358, "ANODE (p=10)": 171_799}),
    ("svhn", {"NODE": 172_358, "ANODE (p=10)": 171_799}),
])
def test_image_parameter_counts_match_the_paper(name, expected):
    assert image_counts(name) == expected


def test_tinyimagenet_parameter_counts_are_pinned_and_far_above_the_paper():
    # The models put the linear head on the flattened full-resolution state (C + p) x 64 x 64, so at
    # 200 classes every channel costs 64 * 64 * 200 = 819,200 head weights: the head alone of the
    # ANODE (3 + 1 channels) is 3.28M. The paper's ~366k cannot be reached with this architecture, and
    # the NODE is matched by widening its vector field (308 filters) instead (see the config's description).
    counts = image_counts("tinyimagenet")
    assert counts == {"NODE": 3_314_043, "ANODE (p=1)": 3_314_508}
    assert min(counts.values()) > 5 * 366_000
    assert abs(counts["NODE"] - counts["ANODE (p=1)"]) < 0.01 * counts["NODE"]  # parameter-matched
    head = {"NODE": 3 * 64 * 64 * 200 + 200, "ANODE (p=1)": 4 * 64 * 64 * 200 + 200}
    assert head["ANODE (p=1)"] / counts["ANODE (p=1)"] > 0.98  # the head dominates
    assert head["NODE"] / counts["NODE"] > 0.7


def test_spheres_resnet_matches_the_node_parameter_count():
    cfg = load_config(CONFIG_ROOT / "toy" / "spheres.toml")
    resnet, node = cfg.model("ResNet"), cfg.model("NODE")
    assert resnet.match_parameters == "NODE"
    for ds in cfg.datasets:
        data = PreparedData((ds.dim,), 1, True, torch.zeros(4, ds.dim), torch.zeros(4, 1))
        n_res = count_parameters(build_model(resnet, cfg, data, seed=0))
        n_node = count_parameters(build_model(node, cfg, data, seed=0))
        assert abs(n_res - n_node) <= 0.1 * n_node, (ds.name, n_res, n_node)
        # and not by accident: the unmatched ResNet (hidden_dim 32 x 5 layers) is far bigger
        unmatched = dataclasses.replace(resnet, match_parameters=None)
        assert count_parameters(build_model(unmatched, cfg, data, seed=0)) > 2 * n_node


def test_build_model_rejects_mismatched_data_kinds():
    cfg = parse_config(MINIMAL)
    images = PreparedData((1, 28, 28), 10, False, torch.zeros(1, 1, 28, 28), torch.zeros(1, dtype=torch.long))
    with pytest.raises(ValueError, match=r"model 'NODE' of kind 'odenet' needs vector data.*use convodenet"):
        build_model(cfg.model("NODE"), cfg, images, seed=0)
    vectors = PreparedData((2,), 1, True, torch.zeros(1, 2), torch.zeros(1, 1))
    conv = ModelSpec(name="C", kind="convodenet", hidden_dim=4)
    with pytest.raises(ValueError, match=r"model 'C' of kind 'convodenet' needs image data"):
        build_model(conv, cfg, vectors, seed=0)


def test_build_model_is_deterministic_in_the_seed():
    cfg = parse_config(MINIMAL)
    data = PreparedData((2,), 1, True, torch.zeros(1, 2), torch.zeros(1, 1))
    a, b, c = (build_model(cfg.model("NODE"), cfg, data, seed=s) for s in (3, 3, 4))
    pa, pb, pc = (torch.cat([p.flatten() for p in m.parameters()]) for m in (a, b, c))
    assert torch.equal(pa, pb) and not torch.equal(pa, pc)


# ----------------------------------------------------------------------------- validation gaps (bugs)
# Each value below passes parse_config but is bound to fail later, inside every run, where it is recorded
# as a failed run (or, for search.epochs = 0, silently ignored) instead of a ConfigError naming the key.


@pytest.mark.parametrize("epochs", [0, -1])
def test_search_epochs_must_be_positive(epochs):
    with pytest.raises(ConfigError, match=r"epochs must be >= 1"):
        parse_config(with_changes("search", {"space": {"lr": [1e-3]}, "epochs": epochs}))


@pytest.mark.parametrize(("key", "value"), [("trajectories", -1), ("input_map", -2), ("feature_snapshots", -1),
                                            ("timesteps", 1)])
def test_artifact_counts_are_validated(key, value):
    with pytest.raises(ConfigError, match=rf"config\.artifacts: {key} must be"):
        parse_config(with_changes(f"artifacts.{key}", value))


@pytest.mark.parametrize(("path", "value"), [
    ("datasets.0.dim", 0),
    ("datasets.0.inner_range", [0.5, 0.0]),
    ("datasets.0.outer_range", [0.2, 0.4]),
    ("datasets.0.holdout_angle", [1.0, 0.5]),
    ("models.0.non_linearity", "swishy"),
])
def test_values_checked_at_run_time_are_rejected_at_load_time(path, value):
    with pytest.raises(ConfigError, match=r"config\.(datasets|models)\[0\]"):
        parse_config(with_changes(path, value))


@pytest.mark.parametrize(("key", "value"), [("dataset", "imagenet"), ("normalization", "zscore")])
def test_image_spec_choices_are_validated(key, value):
    data = {**MINIMAL, "datasets": [{"kind": "image", "name": "m", key: value}]}
    with pytest.raises(ConfigError, match=rf"config\.datasets\[0\]: unknown {key}"):
        parse_config(data)


def test_flow_model_prediction_matches_the_targets():
    cfg = parse_config({**MINIMAL, "models": [{"name": "F", "kind": "flow", "hidden_dim": 4}]})
    data = PreparedData((2,), 1, True, torch.zeros(4, 2), torch.zeros(4, 1))
    try:
        model = build_model(cfg.model("F"), cfg, data, seed=0)
    except ValueError:
        return  # rejecting the combination is a fix too
    assert model(torch.randn(3, 2)).shape == (3, 1)


# ----------------------------------------------------------------------------- roles


@pytest.mark.parametrize(("table", "message"), [
    ({"name": "m", "role": "hero"}, r"model 'm': unknown role 'hero'; valid choices: \['baseline', 'augmented', 'reference', 'variant'\]"),
    ({"name": "m", "role": "baseline", "augment_dim": 2}, r"role 'baseline' is a NODE .* got kind 'odenet' with augment_dim 2"),
    ({"name": "m", "role": "augmented"}, r"role 'augmented' is an ANODE .* augment_dim 0"),
    ({"name": "m", "role": "reference"}, r"role 'reference' is a non-ODE model .* got kind 'odenet'"),
    ({"name": "m", "role": "augmented", "kind": "resnet", "augment_dim": 1}, r"role 'augmented' is an ANODE"),
])
def test_model_roles_are_validated(table, message):
    data = {"name": "x", "datasets": [{"kind": "g1d", "name": "g1d"}], "models": [table]}
    with pytest.raises(ConfigError, match=message):
        parse_config(data)


def test_search_over_augment_dim_keeps_roles_valid():
    data = {"name": "x", "datasets": [{"kind": "g1d", "name": "g1d"}],
            "models": [{"name": "NODE", "role": "baseline"}], "search": {"space": {"augment_dim": [0, 1]}}}
    with pytest.raises(ConfigError, match=r"role 'baseline' is a NODE .* augment_dim 1"):
        parse_config(data)
    data["models"][0]["role"] = "variant"
    assert parse_config(data).models[0].role == "variant"


def test_every_builtin_model_declares_a_role():
    for path in BUILTIN:
        assert all(m.role is not None for m in load_config(path).models), path
