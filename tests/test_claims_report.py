"""Tests of anode.lab.claims (verdicts computed from aggregates), the loss-level metrics and anode.lab.report."""

from __future__ import annotations

import dataclasses
import re

import matplotlib

matplotlib.use("Agg")

import numpy as np
import pytest
from matplotlib.figure import Figure

from anode import History
from anode.lab.claims import (
    HOLDS,
    INCONCLUSIVE,
    NOT_HOLD,
    NOT_RUN,
    TOO_FEW,
    Claim,
    ClaimSpec,
    Selector,
    TestSpec,
    check_claims,
    evaluate_claims,
    load_claims,
)
from anode.lab.experiments.config import load_config
from anode.lab.experiments.schema import ConfigError
from anode.lab.report import Section, machine_description, results_rows, write_report
from anode.lab.reproduce.images import _with_level_metrics, loss_level_metrics
from anode.lab.reproduce.toy import builtin_config
from anode.plotting import save_figure

METRICS = ("final_loss", "final_nfe_forward", "final_nfe_backward", "mean_nfe_forward", "nfe_growth",
           "eval_loss", "eval_accuracy", "time_per_iteration", "num_parameters")
TOY = ("flow_g1d", "spheres", "generalisation", "weight_decay", "augmentation", "beyond_g1d", "beyond_spheres")
TOY_CLAIMS = 14


def s(mean: float | None, std: float = 0.01, n: int = 5, **extra) -> dict:
    return {"mean": None, "std": None, "n": 0} if mean is None else {"mean": mean, "std": std, "n": n, **extra}


def group(dataset: str, model: str, *, n: int = 5, failed: int = 0, **metrics: float) -> dict:
    """A group shaped like aggregate_experiment's output (unset metrics: never measured)."""
    out = {"dataset": dataset, "model": model, "completed": n, "failed": failed, "failures": []}
    out.update({k: s(metrics.get(k), n=n) for k in METRICS})
    return out


@pytest.fixture(scope="module")
def toy():
    """The built-in toy claims and experiment configs."""
    configs = {name: load_config(builtin_config(f"toy/{name}")) for name in TOY}
    return load_claims(builtin_config("toy/claims")), configs


def toy_aggregates(holds: bool, n: int = 5) -> dict:
    """Synthetic aggregates of the toy experiments where every claim holds (or is reversed)."""
    good, bad = (0.01, 0.3) if holds else (0.3, 0.01)
    few, many = (20.0, 40.0) if holds else (40.0, 20.0)
    flat, growing = (1.0, 2.0) if holds else (2.0, 1.0)
    g = lambda *a, **k: group(*a, n=n, **k)
    spheres = []
    for ds in ("spheres 1d", "spheres 2d"):
        spheres += [
            g(ds, "ResNet", final_loss=good, nfe_growth=float("nan"), mean_nfe_forward=0.0),
            g(ds, "NODE", final_loss=bad, nfe_growth=growing, mean_nfe_forward=many),
            g(ds, "ANODE (p=1)", final_loss=good, nfe_growth=flat, mean_nfe_forward=few),
        ]
    spheres.append(g("sines 2d", "NODE", final_loss=good if holds else 0.5))
    held = "spheres 2d, slice held out"
    return {
        "flow_g1d": {"groups": [
            g("identity", "NODE", final_loss=0.01 if holds else 0.5),
            g("g1d", "NODE", final_loss=1.0 if holds else 0.2),
            g("g1d", "ANODE (p=1)", final_loss=0.01 if holds else 0.5),
        ]},
        "spheres": {"groups": spheres},
        "generalisation": {"groups": [g(held, "NODE", eval_loss=0.4 if holds else 0.05),
                                      g(held, "ANODE (p=1)", eval_loss=0.05 if holds else 0.4)]},
        "weight_decay": {"groups": [
            g("spheres 2d", "NODE", mean_nfe_forward=many),
            g("spheres 2d", "NODE + weight decay", mean_nfe_forward=few),
            g("spheres 2d", "ANODE (p=1)", mean_nfe_forward=few),
            g("spheres 2d", "ANODE (p=1) + weight decay", mean_nfe_forward=few / 2 if holds else few * 2),
        ]},
        "beyond_g1d": {"groups": [
            g("g1d", "ANODE zeros (p=1)", final_loss=good, mean_nfe_forward=many),
            g("g1d", "ANODE learned (p=1)", final_loss=good, mean_nfe_forward=many),
            g("g1d", "SONODE (p=1)", final_loss=0.01 if holds else 0.5, mean_nfe_forward=many),
            g("g1d", "ANODE zeros (p=1) + kinetic energy", final_loss=good, mean_nfe_forward=few),
        ]},
        "beyond_spheres": {"groups": [
            g("spheres 2d", "ANODE zeros (p=2)", final_loss=bad, mean_nfe_forward=many),
            g("spheres 2d", "ANODE learned (p=2)", final_loss=good, mean_nfe_forward=many),
            g("spheres 2d", "SONODE (p=2)", final_loss=good, mean_nfe_forward=many),
            g("spheres 2d", "ANODE zeros (p=2) + kinetic energy", final_loss=bad, mean_nfe_forward=few),
        ]},
    }


# ----------------------------------------------------------------------------- one comparison, every verdict


def pair_experiment(tmp_path, *, metric: str = "mean_nfe_forward"):
    """A two-model experiment (NODE vs ANODE) and the claim "ANODE's metric is better"."""
    path = tmp_path / "pair.toml"
    path.write_text("""name = "pair"
[[datasets]]
kind = "g1d"
name = "g1d"
[[models]]
name = "NODE"
role = "baseline"
[[models]]
name = "ANODE"
role = "augmented"
augment_dim = 1
""")
    claim = ClaimSpec("ANODE is better.", (TestSpec(metric, better=Selector("augmented"), worse=Selector("baseline")),))
    return claim, {"pair": load_config(path)}


def judge(claim, configs, better: dict, worse: dict, *, metric: str = "mean_nfe_forward", failed=(0, 0)) -> Claim:
    agg = {"groups": [{"dataset": "g1d", "model": "ANODE", "failed": failed[0], metric: better},
                      {"dataset": "g1d", "model": "NODE", "failed": failed[1], metric: worse}]}
    return evaluate_claims([claim], configs, {"pair": agg})[0]


@pytest.mark.parametrize(("better", "worse", "verdict", "detail"), [
    (s(14.0, 0.0, 1), s(20.0, 0.0, 1), TOO_FEW, "n = 1 vs 1"),          # one repeat: never a verdict
    (s(14.0, 0.5, 2), s(20.0, 0.5, 2), TOO_FEW, "n = 2 vs 2"),          # a big gap, still too few
    (s(14.0, 0.5, 3), s(20.0, 0.5, 2), TOO_FEW, "n = 3 vs 2"),
    (s(14.0, 0.5, 3), s(20.0, 0.5, 3), HOLDS, "p = "),                  # three a side, clear gap
    (s(26.0, 0.5, 3), s(20.0, 0.5, 3), NOT_HOLD, "p = "),               # clearly the wrong way
    (s(19.9, 1.0, 3), s(20.0, 1.0, 3), INCONCLUSIVE, "p = "),           # right way within noise
    (s(20.1, 1.0, 3), s(20.0, 1.0, 3), INCONCLUSIVE, "p = "),           # wrong way within noise
    (s(20.0, 0.0, 5), s(20.0, 0.0, 5), INCONCLUSIVE, "tie with zero spread"),  # dopri5's floor on both sides
    (s(14.0, 0.0, 3), s(20.0, 0.0, 3), HOLDS, "zero spread"),
    (s(None), s(20.0), NOT_RUN, ""),
])
def test_comparison_verdicts(tmp_path, better, worse, verdict, detail):
    claim, configs = pair_experiment(tmp_path)
    row = judge(claim, configs, better, worse)
    assert row.verdict == verdict and (detail in row.display or detail in row.measured)
    assert "Welch" in row.criterion and "α = 0.05" in row.criterion


def test_welch_needs_more_than_two_standard_errors_at_small_n(tmp_path):
    # a 2.05-standard-error gap with 3 repeats a side: the old 2-SE rule said "holds"; Welch (df = 4, p = 0.055) does not
    claim, configs = pair_experiment(tmp_path)
    se = (2 * 1.0 / 3) ** 0.5
    assert judge(claim, configs, s(20.0 - 2.05 * se, 1.0, 3), s(20.0, 1.0, 3)).verdict == INCONCLUSIVE
    assert judge(claim, configs, s(20.0 - 2.05 * se, 1.0, 30), s(20.0, 1.0, 30)).verdict == HOLDS


def test_higher_is_better_metrics_flip_the_test(tmp_path):
    claim, configs = pair_experiment(tmp_path, metric="eval_accuracy")
    claim = ClaimSpec("acc", (TestSpec("eval_accuracy", better=Selector("augmented"), worse=Selector("baseline")),))
    assert judge(claim, configs, s(0.98, 0.001, 5), s(0.96, 0.001, 5), metric="eval_accuracy").verdict == HOLDS
    assert judge(claim, configs, s(0.96, 0.001, 5), s(0.98, 0.001, 5), metric="eval_accuracy").verdict == NOT_HOLD


@pytest.mark.parametrize(("better", "verdict"), [
    (-2.57, HOLDS),          # 0.04 nats below the baseline, tightly: within the 0.05 margin
    (-2.50, HOLDS),          # above the baseline
    (-2.64, NOT_HOLD),       # 0.11 nats below: worse by more than the margin
    (-2.58, INCONCLUSIVE),   # 0.05 below: on the margin
])
def test_a_margin_makes_a_non_inferiority_test(tmp_path, better, verdict):
    _, configs = pair_experiment(tmp_path)
    test = TestSpec("test_log_likelihood", margin=0.05, better=Selector("augmented"), worse=Selector("baseline"))
    row = judge(ClaimSpec("at least", (test,)), configs, s(better, 0.005, 3), s(-2.53, 0.005, 3), metric="test_log_likelihood")
    assert row.verdict == verdict
    assert "ANODE > NODE − 0.05 (non-inferiority margin 0.05, one-sided Welch" in row.criterion
    # without the margin, the first case is the opposite verdict
    strict = TestSpec("test_log_likelihood", better=Selector("augmented"), worse=Selector("baseline"))
    if better == -2.57:
        assert judge(ClaimSpec("above", (strict,)), configs, s(better, 0.005, 3), s(-2.53, 0.005, 3),
                     metric="test_log_likelihood").verdict == NOT_HOLD


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"margin": -0.1}, "margin must be a finite number >= 0"),
    ({"margin": float("nan")}, "margin must be a finite number >= 0"),
    ({"margin": 0.1, "factor": 2.0}, "drop factor"),
])
def test_margin_is_validated(kwargs, match):
    with pytest.raises(ValueError, match=match):
        TestSpec("eval_loss", better=Selector("augmented"), worse=Selector("baseline"), **kwargs)
    with pytest.raises(ValueError, match="for a threshold"):
        TestSpec("eval_loss", model=Selector("augmented"), below=1.0, margin=0.1)


def test_censored_runs_of_the_favoured_model_block_holds(tmp_path):
    claim, configs = pair_experiment(tmp_path, metric="iterations_to_level")
    claim = ClaimSpec("faster", (TestSpec("iterations_to_level", better=Selector("augmented"), worse=Selector("baseline")),))
    clear = judge(claim, configs, s(50.0, 2.0, 5, censored=0), s(100.0, 2.0, 5, censored=0), metric="iterations_to_level")
    assert clear.verdict == HOLDS
    blocked = judge(claim, configs, s(50.0, 2.0, 5, censored=2), s(100.0, 2.0, 5, censored=1), metric="iterations_to_level")
    assert blocked.verdict == INCONCLUSIVE and "2 censored or failed runs of the favoured model vs 1" in blocked.detail
    assert "not reached 2 of 5" in blocked.measured and "not reached 1 of 5" in blocked.measured
    # a run that failed before the level is already censored there: it is not counted twice
    once = judge(claim, configs, s(50.0, 2.0, 5, censored=1), s(100.0, 2.0, 5, censored=1), metric="iterations_to_level",
                 failed=(1, 0))
    assert once.verdict == HOLDS and "1 failed" in once.measured


def test_failed_runs_are_evidence(tmp_path):
    claim, configs = pair_experiment(tmp_path)
    row = judge(claim, configs, s(14.0, 0.5, 4), s(20.0, 0.5, 5), failed=(1, 0))
    assert row.verdict == INCONCLUSIVE and "1 failed" in row.measured
    row = judge(claim, configs, s(14.0, 0.5, 5), s(20.0, 0.5, 4), failed=(0, 1))
    assert row.verdict == HOLDS and "1 failed" in row.measured  # the failure is named either way


def test_threshold_verdicts(tmp_path):
    _, configs = pair_experiment(tmp_path)
    claim = ClaimSpec("fits", (TestSpec("final_loss", model=Selector("augmented"), below=0.05),))
    row = lambda stats, failed=0: evaluate_claims([claim], configs, {"pair": {"groups": [
        {"dataset": "g1d", "model": "ANODE", "failed": failed, "final_loss": stats}]}})[0]
    assert row(s(0.01, 0.005, 3)).verdict == HOLDS
    assert row(s(0.2, 0.005, 3)).verdict == NOT_HOLD
    assert row(s(0.049, 0.05, 3)).verdict == INCONCLUSIVE
    assert row(s(0.01, 0.005, 1)).display == "too few repeats (n = 1)"
    assert row(s(0.01, 0.005, 3), failed=1).verdict == INCONCLUSIVE
    assert "one-sample t-test" in row(s(0.01, 0.005, 3)).criterion


# ----------------------------------------------------------------------------- the toy claims


def test_toy_claims_hold_when_the_paper_is_right(toy):
    claims, configs = toy
    rows = evaluate_claims(claims, configs, toy_aggregates(holds=True))
    assert len(rows) == TOY_CLAIMS
    assert [c.verdict for c in rows] == [HOLDS] * TOY_CLAIMS, [(c.claim, c.measured) for c in rows if c.verdict != HOLDS]
    assert [c.source for c in rows] == ["flow_g1d", "flow_g1d", "spheres", "spheres", "spheres", "generalisation",
                                        "spheres", "spheres", "weight_decay", "beyond_g1d", "beyond_g1d",
                                        "beyond_spheres", "beyond_spheres", "beyond_spheres"]
    assert all(c.criterion and c.measured for c in rows)


def test_toy_claims_do_not_hold_when_reversed(toy):
    claims, configs = toy
    rows = evaluate_claims(claims, configs, toy_aggregates(holds=False))
    assert [c.verdict for c in rows] == [NOT_HOLD] * TOY_CLAIMS, [(c.claim, c.measured) for c in rows if c.verdict != NOT_HOLD]


def test_one_repeat_gives_no_verdict(toy):
    claims, configs = toy
    rows = evaluate_claims(claims, configs, toy_aggregates(holds=True, n=1))
    assert {c.verdict for c in rows} == {TOO_FEW} and all("n = 1" in c.display for c in rows)


def test_toy_claims_not_run_without_results(toy):
    claims, configs = toy
    rows = evaluate_claims(claims, configs, {})
    assert len(rows) == TOY_CLAIMS and {c.verdict for c in rows} == {NOT_RUN}
    assert all("n/a" in c.measured for c in rows)


def test_toy_claims_partial_results(toy):
    claims, configs = toy
    aggs = toy_aggregates(holds=True)
    assert ([c.verdict for c in evaluate_claims(claims, configs, {"flow_g1d": aggs["flow_g1d"]})]
            == [HOLDS, HOLDS] + [NOT_RUN] * (TOY_CLAIMS - 2))
    aggs["spheres"]["groups"] = [g for g in aggs["spheres"]["groups"] if g["model"] != "ResNet"]
    by_claim = {c.claim: c.verdict for c in evaluate_claims(claims, configs, aggs)}
    assert by_claim["ResNets fit g(x) easily, unlike NODEs (Fig. 5)."] == NOT_RUN
    assert sum(v == HOLDS for v in by_claim.values()) == TOY_CLAIMS - 1


def test_renaming_models_changes_no_verdict(toy):
    claims, configs = toy
    aggs = toy_aggregates(holds=True)
    renamed_configs = {}
    for name, cfg in configs.items():
        models = tuple(dataclasses.replace(m, name=f"model {i} of {name}", match_parameters=None if m.match_parameters is None
                                           else f"model {[x.name for x in cfg.models].index(m.match_parameters)} of {name}")
                       for i, m in enumerate(cfg.models))
        renamed_configs[name] = dataclasses.replace(cfg, models=models)
        old_to_new = {m.name: n.name for m, n in zip(cfg.models, models)}
        for g in aggs.get(name, {"groups": []})["groups"]:
            g["model"] = old_to_new[g["model"]]
    rows = evaluate_claims(claims, renamed_configs, aggs)
    assert [c.verdict for c in rows] == [HOLDS] * TOY_CLAIMS
    assert "model 2 of spheres" in rows[2].measured  # the labels follow the new names


def test_toy_claim_measured_text_reports_the_numbers(toy):
    claims, configs = toy
    rows = evaluate_claims(claims, configs, toy_aggregates(holds=True))
    assert "g1d: NODE 1 ± 0.01 (n=5) vs 0.9" in rows[1].measured and "ANODE (p=1) 0.01 ± 0.01 (n=5) vs 0.05" in rows[1].measured
    assert "ratio 0.50" in rows[4].measured and "p = " in rows[4].measured


def test_toy_claim_mixed_dimensions_do_not_hold(toy):
    claims, configs = toy
    aggs = toy_aggregates(holds=True)
    for g in aggs["spheres"]["groups"]:  # ANODE worse than NODE in d = 1 only
        if g["dataset"] == "spheres 1d" and g["model"] == "ANODE (p=1)":
            g["final_loss"] = s(0.9)
    assert evaluate_claims(claims, configs, aggs)[2].verdict == NOT_HOLD


# ----------------------------------------------------------------------------- declaring claims


def test_check_claims_fails_before_training_when_a_role_is_missing(toy):
    claims, configs = toy
    spheres = configs["spheres"]
    no_resnet = dataclasses.replace(spheres, models=tuple(m for m in spheres.models if m.role != "reference"))
    with pytest.raises(ConfigError, match=r"has no model with role reference"):
        check_claims(claims, {**configs, "spheres": no_resnet})
    with pytest.raises(ConfigError, match=r"no experiment 'weight_decay'"):
        check_claims(claims, {k: v for k, v in configs.items() if k != "weight_decay"})
    renamed = dataclasses.replace(spheres, datasets=tuple(dataclasses.replace(d, name=d.name.upper()) for d in spheres.datasets))
    with pytest.raises(ConfigError, match=r"has no dataset 'spheres 1d'"):
        check_claims(claims, {**configs, "spheres": renamed})
    check_claims(claims, configs)  # the built-in suite is consistent


def test_ambiguous_selector_is_a_config_error(toy):
    _claims, configs = toy
    wd = configs["weight_decay"]
    claim = ClaimSpec("x", (TestSpec("mean_nfe_forward", datasets=("spheres 2d",), better=Selector("augmented"),
                                     worse=Selector("baseline")),), experiment="weight_decay")
    with pytest.raises(ConfigError, match=r"matches several models \['ANODE \(p=1\)', 'ANODE \(p=1\) \+ weight decay'\]"):
        evaluate_claims([claim], {"weight_decay": wd}, {})


def test_load_claims_validates(tmp_path):
    path = tmp_path / "claims.toml"
    path.write_text('[[claims]]\nclaim = "x"\n'
                    'tests = [{ metric = "speed", better = { role = "augmented" }, worse = { role = "baseline" } }]\n')
    with pytest.raises(ConfigError, match=r"unknown metric 'speed'; valid choices: \['final_loss'"):
        load_claims(path)
    path.write_text('[[claims]]\nclaim = "x"\n'
                    'tests = [{ metric = "final_loss", better = { role = "hero" }, worse = { role = "baseline" } }]\n')
    with pytest.raises(ConfigError, match=r"unknown role 'hero'; valid choices"):
        load_claims(path)
    path.write_text('[[claims]]\nclaim = "x"\ntests = [{ metric = "final_loss", model = { role = "baseline" } }]\n')
    with pytest.raises(ConfigError, match=r"exactly one of below/above"):
        load_claims(path)
    with pytest.raises(FileNotFoundError, match="no claims file"):
        load_claims(tmp_path / "missing.toml")


# ----------------------------------------------------------------------------- loss-level metrics


def history(losses, nfe: float) -> History:
    return History(iterations=[{"iteration": i, "epoch": 0, "loss": float(v), "nfe_forward": nfe, "nfe_backward": 0,
                                "time": 0.01} for i, v in enumerate(losses)])


def image_setup(tmp_path):
    cfg = load_config(builtin_config("images/mnist"))
    return load_claims(builtin_config("images/claims")), {cfg.name: cfg}


def test_loss_level_metrics_faster_model_reaches_the_level_first(tmp_path):
    t = np.arange(200)
    histories = {
        "NODE": [history(np.exp(-0.01 * t) + 0.001 * k, 30.0 + k) for k in range(3)],
        "ANODE (p=5)": [history(np.exp(-0.05 * t) + 0.001 * k, 10.0 + k) for k in range(3)],
    }
    level, iters, nfes = loss_level_metrics(histories)
    smooth_final = [np.mean(np.exp(-0.01 * t[-10:]) + 0.001 * k) for k in range(3)]
    assert level == pytest.approx(max(smooth_final))  # the highest final loss: every completed run reaches it
    assert iters["ANODE (p=5)"]["n"] == 3 and iters["ANODE (p=5)"]["censored"] == 0
    assert iters["NODE"]["n"] == 3 and iters["NODE"]["censored"] == 0
    assert iters["ANODE (p=5)"]["mean"] < iters["NODE"]["mean"] / 3
    assert nfes["ANODE (p=5)"]["mean"] == 11.0
    claims, configs = image_setup(tmp_path)
    agg = {"groups": [group("mnist", "NODE", eval_accuracy=0.9), group("mnist", "ANODE (p=5)", eval_accuracy=0.9)]}
    rows = evaluate_claims(claims, configs, {"mnist": _with_level_metrics(agg, "mnist", iters, nfes)})
    assert [r.verdict for r in rows[:2]] == [HOLDS, HOLDS] and rows[2].verdict == INCONCLUSIVE
    assert rows[0].source == "mnist" and "iterations to reach the loss level" in rows[0].criterion


def test_loss_level_metrics_never_drops_runs_that_miss_the_level(tmp_path):
    t = np.arange(100)
    node = [history(np.exp(-0.02 * t) + 0.1 + 0.001 * k, 20.0) for k in range(3)]
    fast = history(np.exp(-0.1 * t), 20.0)
    failed = [history(np.full(30 + k, 1.0), 20.0) for k in range(2)]  # solver failures before the level
    level, iters, nfes = loss_level_metrics({"NODE": node, "ANODE (p=5)": [fast, *failed]})
    assert level == pytest.approx(max(np.mean(h.array("loss")[-10:]) for h in node))
    anode = iters["ANODE (p=5)"]
    assert anode["n"] == 3 and anode["censored"] == 2  # the failed runs count, censored at the budget of 100
    first = iters["NODE"]["mean"]  # NODE is slower than the fast ANODE run
    assert anode["mean"] > (0 + 100 + 100) / 3 and first > 30
    assert nfes["ANODE (p=5)"]["n"] == 1 and nfes["ANODE (p=5)"]["censored"] == 2
    claims, configs = image_setup(tmp_path)
    agg = {"groups": [group("mnist", "NODE"), group("mnist", "ANODE (p=5)")]}
    rows = evaluate_claims(claims, configs, {"mnist": _with_level_metrics(agg, "mnist", iters, nfes)})
    assert rows[0].verdict != HOLDS and "not reached 2 of 3" in rows[0].measured
    assert rows[1].verdict == TOO_FEW  # one run reached it: an NFE there is known for n = 1 only
    assert "(n=1; not reached 2 of 3)" in rows[1].measured


def test_loss_level_metrics_counts_iterations_from_one():
    flat = [history([1.0] * 5 + [0.0] * 20, 4.0)]
    level, iters, _ = loss_level_metrics({"a": flat, "b": [history([0.5] * 25, 4.0)]}, window=1)
    assert level == 0.5  # max of final losses 0.0 and 0.5
    assert iters["b"]["mean"] == 1.0 and iters["a"]["mean"] == 6.0


def test_loss_level_metrics_needs_two_models():
    assert loss_level_metrics({"a": [history([1.0, 0.5], 1.0)], "b": []}) == (None, {}, {})
    assert loss_level_metrics({"a": [history([1.0, 0.5], 1.0)], "b": [History()]}) == (None, {}, {})


# ----------------------------------------------------------------------------- report


@pytest.fixture
def figure_png(tmp_path):
    fig = Figure()
    fig.add_subplot().plot([0, 1, 2], [2, 1, 0])
    return save_figure(fig, tmp_path / "figures" / "loss.png")


def test_write_report_markdown_and_self_contained_html(tmp_path, figure_png):
    aggs = toy_aggregates(holds=True)
    claims = [Claim(f"claim {i}", "m", HOLDS, "crit", "spheres") for i in range(8)]
    claims.insert(0, Claim("A claim with <markup> & a | pipe", "x", NOT_HOLD, "crit", "flow_g1d"))
    section = Section("Figure 5 <loss>", "Mean ± std.", [("training loss", figure_png)])
    md_path, html_path = write_report(tmp_path, title="Toy <report>", summary=["budget: smoke", "machine: test"],
                                      claims=claims, aggregates=aggs, sections=[section])
    assert md_path == tmp_path / "report.md" and html_path == tmp_path / "report.html"

    md = md_path.read_text()
    assert md.startswith("# Toy <report>\n") and "- budget: smoke" in md
    assert "## Claims (8 holds, 1 does not hold)" in md
    assert "| paper claim | what we measured | criterion | holds? |" in md
    assert "A claim with <markup> & a \\| pipe" in md  # pipes escaped in the table
    for c in claims[1:]:
        assert f"| {c.verdict} |" in md and c.claim.replace("|", "\\|") in md
    assert "![training loss](figures/loss.png)" in md
    assert "| spheres | spheres 2d | ANODE (p=1) |" in md  # results table

    page = html_path.read_text()
    assert page.startswith("<!doctype html>") and page.rstrip().endswith("</html>")
    assert "<title>Toy &lt;report&gt;</title>" in page
    assert "A claim with &lt;markup&gt; &amp; a | pipe" in page and "<markup>" not in page
    assert page.count('class="badge"') == 9 and page.count(">holds</span>") == 8 and page.count(">does not hold</span>") == 1
    srcs = re.findall(r'src="([^"]*)"', page)
    assert len(srcs) == 1 and srcs[0].startswith("data:image/png;base64,")
    import base64
    assert base64.b64decode(srcs[0].split(",", 1)[1]) == figure_png.read_bytes()
    assert not re.search(r"(src|href)=[\"']?(https?:|//|file:)", page)  # nothing external
    assert "<link" not in page and "<script" not in page


def test_write_report_counts_every_verdict(tmp_path):
    claims = [Claim(f"c{i}", "m", v, "k", "x", d) for i, (v, d) in enumerate(
        [(HOLDS, ""), (INCONCLUSIVE, ""), (INCONCLUSIVE, ""), (NOT_RUN, ""), (TOO_FEW, "n = 1 vs 1")])]
    md_path, html_path = write_report(tmp_path / "out", title="T", summary=[], claims=claims, aggregates={}, sections=[])
    md = md_path.read_text()
    heading = next(line for line in md.splitlines() if line.startswith("## Claims"))
    assert "1 holds" in heading and "2 inconclusive" in heading and "1 too few repeats" in heading
    assert "does not hold" not in heading and "| too few repeats (n = 1 vs 1) |" in md
    page = html_path.read_text()
    assert page.count(">not run</span>") == 1 and ">too few repeats (n = 1 vs 1)</span>" in page and "src=" not in page


def test_results_rows_format_mean_and_std():
    agg = {"groups": [group("spheres 2d", "NODE", final_loss=0.25, num_parameters=1253.0),
                      {**group("spheres 2d", "ANODE"), "completed": 0, "failed": 3}]}
    agg["groups"][0]["final_loss"] = {"mean": 0.25, "std": 0.05, "n": 4}
    agg["groups"][0]["eval_accuracy"] = {"mean": 0.9, "std": 0.0, "n": 1}
    node, anode_row = results_rows({"spheres": agg})
    assert node[:6] == ["spheres", "spheres 2d", "NODE", "5/0", "1,253", "0.25 ± 0.05"]
    assert node[10] == "0.9"  # single value: no ± part
    assert anode_row[3] == "0/3" and anode_row[4] == "–" and anode_row[5] == "–"


def test_machine_description_names_the_software():
    import torch

    import anode
    from anode.lab.environment import cpu_model

    line = machine_description("cpu")
    assert f"torch {torch.__version__}" in line and f"anode {anode.__version__}" in line and "CPU cores" in line
    # the CPU's model and torch's kernel path: results on the CPU differ in their last bits between models
    assert cpu_model() and f"({cpu_model()}, torch kernels {torch.backends.cpu.get_cpu_capability()})" in line


def test_report_tally_counts_not_run(tmp_path, toy):
    claims = evaluate_claims(*toy, {})
    md_path, _ = write_report(tmp_path, title="T", summary=[], claims=claims, aggregates={}, sections=[])
    assert f"## Claims ({TOY_CLAIMS} not run)" in md_path.read_text()


def test_selectors_tell_augmentations_and_regularisers_apart(toy):
    _claims, configs = toy
    cfg = configs["beyond_spheres"]
    pick = lambda **kw: [m.name for m in cfg.models if Selector("augmented", **kw).matches(m, cfg)]
    assert pick(augmentation="learned") == ["ANODE learned (p=2)"]
    assert pick(kinetic_energy=0.01) == ["ANODE zeros (p=2) + kinetic energy"]
    assert pick(augmentation="zeros", kinetic_energy=0.0) == ["ANODE zeros (p=2)"]
    with pytest.raises(ValueError, match=r"unknown augmentation 'ones'; valid choices"):
        Selector("augmented", augmentation="ones")


def test_every_part_of_a_claim_shows_its_own_verdict(toy, tmp_path):
    """A claim of several tests ("NODE's NFE grows while ANODE's stays flat", on two datasets) keeps each
    part's verdict and statistic, in the claim and in the report's claim table."""
    claims, configs = toy
    aggs = toy_aggregates(holds=True)
    for g in aggs["spheres"]["groups"]:  # ANODE's NFE grows on 2-D as much as NODE's
        if g["dataset"] == "spheres 2d" and g["model"] == "ANODE (p=1)":
            g["nfe_growth"] = s(2.0)
    row = next(c for c in evaluate_claims(claims, configs, aggs) if "NFE grows" in c.claim)
    assert row.verdict != HOLDS and len(row.parts) == 4  # two tests on two datasets
    assert [p.dataset for p in row.parts] == ["spheres 1d", "spheres 2d"] * 2
    assert [p.verdict for p in row.parts if p.dataset == "spheres 1d"] == [HOLDS, HOLDS]  # the 1-D parts still hold
    failing = next(p for p in row.parts if p.verdict != HOLDS)
    assert failing.dataset == "spheres 2d" and "p = " in failing.detail
    assert failing.test.startswith("NFE growth") and " on spheres 2d: " in failing.test and "spheres 1d" not in failing.test
    assert all(p.measured and p.test for p in row.parts)
    md, _ = write_report(tmp_path, title="t", summary=[], claims=[row], aggregates={}, sections=[])
    text = md.read_text()
    assert f"↳ part 1 of {len(row.parts)}" in text
    assert f"| ↳ part {row.parts.index(failing) + 1} of {len(row.parts)} (spheres 2d) | {failing.measured} | {failing.test} | " \
           f"{failing.display} |" in text
    assert row.to_dict()["parts"][0]["verdict"] == row.parts[0].verdict  # summary.json keeps them for `anode compare`
