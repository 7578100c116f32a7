"""Tests of the image claim experiments of `anode reproduce images --experiment NAME` (stability, augmentation,
large_p, weight_decay): budgets and config errors, the stability metrics on synthetic histories, verdicts from
synthetic aggregates, and each experiment end to end on tiny IDX files written here (smoke budget)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import pytest
from test_reproduce_images import shrunk, write_idx

import anode.lab.reproduce.images as ri
from anode import History
from anode.lab.claims import HOLDS, INCONCLUSIVE, NOT_HOLD, TOO_FEW, VERDICTS, evaluate_claims
from anode.lab.cli.commands import IMAGE_EXPERIMENTS, main
from anode.lab.experiments import ConfigError
from anode.lab.experiments.config import ImageSpec

pytestmark = pytest.mark.usefixtures("single_thread")

EXPERIMENTS = ("stability", "augmentation", "large_p", "weight_decay")
BLOWUP = 1000.0


def history(losses: list[float], nfes: list[float]) -> History:
    return History(iterations=[{"iteration": i, "epoch": 0, "loss": float(loss), "accuracy": 0.0, "nfe_forward": nfe,
                                "nfe_backward": 0, "time": 0.01} for i, (loss, nfe) in enumerate(zip(losses, nfes))])


COMPLETED = {"status": "completed", "seed": 0, "failure_kind": None, "error_type": None}


def failed(kind: str = "solver", error: str = "MaxStepsExceeded") -> dict:
    return {"status": "failed", "seed": 1, "failure_kind": kind, "error_type": error}


# ----------------------------------------------------------------------------- configs and budgets


def test_the_suite_lists_the_claim_experiments_and_the_cli_offers_them():
    assert ri.claim_experiments() == EXPERIMENTS
    assert IMAGE_EXPERIMENTS == (ri.TABLE1, *EXPERIMENTS)


@pytest.mark.parametrize("name", EXPERIMENTS)
def test_every_claim_experiment_has_claims_and_fits_them(name):
    cfg, note = ri.image_experiment(None, budget="paper", experiment=name)
    assert cfg.name == name and cfg.repeats >= 3 and note.startswith("GPU protocol sized for one H100 window")
    specs = ri._image_claims(cfg, name)  # check_claims: every selector finds exactly one model
    assert specs and all(c.experiment == name for c in specs)
    assert isinstance(cfg.datasets[0], ImageSpec) and cfg.datasets[0].dataset == "mnist"


def test_table1_claims_stay_with_table1():
    cfg, _ = ri.image_experiment("mnist", budget="small")
    assert [c.experiment for c in ri._image_claims(cfg, ri.TABLE1)] == [None, None, None]


def test_small_budget_of_stability_overrides_the_top_level_keys():
    cfg, note = ri.image_experiment(None, budget="small", experiment="stability", data_dir="/d")
    assert (cfg.repeats, cfg.train.epochs, cfg.train.max_iterations, cfg.train.batch_size) == (3, 60, 240, 16)
    (ds,) = cfg.datasets
    assert (ds.train_subset, ds.test_subset, ds.data_dir) == (64, 200, "/d")
    assert [(m.hidden_dim, m.augment_dim) for m in cfg.models] == [(12, 0), (8, 5)]  # 92 / 8 and 64 / 8, rounded
    assert note.startswith("CPU stand-in") and cfg.solver.max_num_steps == 200


def test_paper_budget_of_a_claim_experiment_keeps_its_config():
    cfg, _ = ri.image_experiment(None, budget="paper", experiment="augmentation")
    assert [m.augment_dim for m in cfg.models] == [0, 1, 2, 5, 10]
    assert (cfg.train.max_iterations, cfg.train.batch_size, cfg.datasets[0].train_subset) == (300, 256, None)


def test_smoke_budget_and_dataset_swap():
    cfg, _ = ri.image_experiment("idx", budget="smoke", experiment="large_p", data_dir="/d")
    assert (cfg.repeats, cfg.train.max_iterations) == (1, 2)
    (ds,) = cfg.datasets
    assert (ds.name, ds.dataset, ds.train_subset) == ("idx", "idx", 64)


def test_unknown_experiment_lists_choices():
    with pytest.raises(ConfigError, match=r"unknown image experiment 'nope'; valid choices: \['table1', 'stability', "
                                          r"'augmentation', 'large_p', 'weight_decay'\]"):
        ri.image_experiment(None, budget="small", experiment="nope")


def test_table1_needs_a_dataset():
    with pytest.raises(ConfigError, match=r"the table1 experiment needs a dataset \(--dataset\)"):
        ri.image_experiment(None, budget="small")


def test_sweep_and_weight_decay_are_table1_options():
    with pytest.raises(ConfigError, match="--sweep-p and --weight-decay apply to the table1 experiment only"):
        ri.image_experiment(None, budget="small", experiment="weight_decay", weight_decay=1e-4)
    with pytest.raises(ConfigError, match="--sweep-p and --weight-decay apply to the table1 experiment only"):
        ri.image_experiment(None, budget="small", experiment="augmentation", sweep_p=(3,))


def fake_suite(monkeypatch, budgets: dict) -> None:
    suite = {"experiments": list(EXPERIMENTS), "budgets": budgets}
    monkeypatch.setattr(ri, "_suite", lambda: suite)
    import anode.lab.reproduce.toy as rp

    monkeypatch.setattr(rp, "read_budget", lambda kind, name: (suite, dict(suite["budgets"][name]), name))


@pytest.mark.parametrize("budget, message", [
    ({"stabilty": {"repeats": 3}}, r"budgets.b.stabilty names no claim experiment; experiments: \['stability'"),
    ({"stability": {"width": 0.5}}, r"budgets.b.stability: unknown key 'width'; valid keys: \[.*'filters_scale'\]"),
    ({"stability": {"filters_scale": 2}}, r"budgets.b: filters_scale must be a number in \(0, 1\], got 2"),
    ({"filters_scale": 0}, r"budgets.b: filters_scale must be a number in \(0, 1\], got 0"),
])
def test_malformed_budget_tables_are_refused(monkeypatch, budget, message):
    fake_suite(monkeypatch, {"b": budget})
    with pytest.raises(ConfigError, match=message):
        ri.image_experiment(None, budget="b", experiment="stability")


# ----------------------------------------------------------------------------- stability metrics


def test_run_stability_counts_a_clean_run_a_blow_up_a_failure_and_an_explosion():
    clean = ri.run_stability(history([2.3] * 10 + [0.1] * 30, [20.0] * 40), COMPLETED, nfe_blowup=BLOWUP)
    assert clean["unstable"] is False and clean["max_nfe_forward"] == 20.0 and clean["status"] == "completed"
    assert not (clean["loss_exploded"] or clean["nfe_blowup"] or clean["non_finite_loss"] or clean["solver_failure"])

    blowup = ri.run_stability(history([2.3] * 10 + [0.1] * 30, [20.0] * 39 + [1300.0]), COMPLETED, nfe_blowup=BLOWUP)
    assert blowup["nfe_blowup"] and blowup["unstable"] and blowup["max_nfe_forward"] == 1300.0
    assert not blowup["loss_exploded"]

    fail = ri.run_stability(history([2.3] * 10 + [0.1] * 5, [20.0] * 15), failed(), nfe_blowup=BLOWUP)
    assert fail["solver_failure"] == "MaxStepsExceeded" and fail["unstable"] and fail["status"] == "failed"
    assert fail["iterations"] == 15 and fail["max_nfe_forward"] == 20.0  # up to the failure

    exploded = ri.run_stability(history([2.3] * 10 + [0.1] * 20 + [5.0] * 20, [20.0] * 50), COMPLETED, nfe_blowup=BLOWUP)
    assert exploded["loss_exploded"] and exploded["unstable"] and not exploded["nfe_blowup"]

    nan = ri.run_stability(history([2.3] * 10 + [math.nan], [20.0] * 11), COMPLETED, nfe_blowup=BLOWUP)
    assert nan["non_finite_loss"] and nan["unstable"]


def test_a_loss_that_never_halved_has_not_exploded():
    slow = ri.run_stability(history([2.3] * 10 + [2.0] * 10 + [2.5] * 10, [20.0] * 30), COMPLETED, nfe_blowup=BLOWUP)
    assert not slow["loss_exploded"] and slow["unstable"] is False


def test_a_crash_is_no_evidence_of_instability():
    crash = ri.run_stability(History(), failed("crash", "RuntimeError"), nfe_blowup=BLOWUP)
    assert crash["status"] == "crashed" and crash["unstable"] is None and crash["max_nfe_forward"] is None
    early = ri.run_stability(History(), failed(), nfe_blowup=BLOWUP)  # failed in the solver at its first iteration
    assert early["unstable"] is True and early["max_nfe_forward"] is None


def test_stability_metrics_keep_failed_runs_and_count_each_kind():
    records = {
        "NODE": [ri.run_stability(history([2.3] * 10 + [0.1] * 30, [20.0] * 39 + [1300.0]), COMPLETED, nfe_blowup=BLOWUP),
                 ri.run_stability(history([2.3] * 10 + [0.1] * 5, [20.0] * 14 + [600.0]), failed(), nfe_blowup=BLOWUP),
                 ri.run_stability(history([2.3] * 10 + [0.1] * 30, [26.0] * 40), COMPLETED, nfe_blowup=BLOWUP),
                 ri.run_stability(History(), failed("crash", "RuntimeError"), nfe_blowup=BLOWUP)],
        "ANODE (p=5)": [ri.run_stability(history([2.3] * 10 + [0.1] * 30, [20.0] * 40), COMPLETED, nfe_blowup=BLOWUP)] * 3,
    }
    stats = ri.stability_metrics(records)
    node, anode = stats["NODE"], stats["ANODE (p=5)"]
    assert node["unstable"]["n"] == 3 and node["unstable"]["mean"] == pytest.approx(2 / 3)  # the crash is left out
    assert node["max_nfe_forward"]["n"] == 3 and node["max_nfe_forward"]["mean"] == pytest.approx((1300 + 600 + 26) / 3)
    assert node["stability_counts"] == {"runs": 4, "solver_failures": 1, "non_finite_loss": 0, "loss_exploded": 0,
                                        "nfe_blowup": 1, "crashed": 1}
    assert anode["unstable"] == {"mean": 0.0, "std": 0.0, "n": 3}


# ----------------------------------------------------------------------------- verdicts from synthetic aggregates


def s(mean: float, std: float, n: int) -> dict:
    return {"mean": mean, "std": std, "n": n}


def aggregate(cfg, metrics: dict[str, dict[str, dict]], failed: dict[str, int] | None = None) -> dict:
    """An aggregate of `cfg` whose groups carry the given {model: {metric: stats}}."""
    groups = []
    for m in cfg.models:
        own = metrics.get(m.name, {})
        n = max((v["n"] for v in own.values()), default=0)
        groups.append({"dataset": cfg.datasets[0].name, "model": m.name, "completed": n, "failed": (failed or {}).get(m.name, 0),
                       "failures": [], **own})
    return {"experiment": cfg.name, "groups": groups}


def verdicts(name: str, metrics: dict, failed: dict | None = None) -> list:
    cfg, _ = ri.image_experiment(None, budget="paper", experiment=name)
    rows = evaluate_claims(ri._image_claims(cfg, name), {cfg.name: cfg}, {cfg.name: aggregate(cfg, metrics, failed)})
    return [r.verdict for r in rows]


def test_stability_verdicts_hold_do_not_hold_and_need_three_repeats():
    stable = {"unstable": s(0.0, 0.0, 3), "max_nfe_forward": s(30.0, 2.0, 3)}
    shaky = {"unstable": s(1.0, 0.0, 3), "max_nfe_forward": s(900.0, 150.0, 3)}
    # NODE's three runs failed: they are the evidence (counted in its `unstable`), not something to drop
    assert verdicts("stability", {"NODE": shaky, "ANODE (p=5)": stable}, failed={"NODE": 3}) == [HOLDS, HOLDS]
    assert verdicts("stability", {"NODE": stable, "ANODE (p=5)": shaky}) == [NOT_HOLD, NOT_HOLD]
    assert verdicts("stability", {"NODE": stable, "ANODE (p=5)": stable}) == [INCONCLUSIVE, INCONCLUSIVE]  # a tie
    few = {"unstable": s(0.0, 0.0, 2), "max_nfe_forward": s(30.0, 2.0, 2)}
    assert verdicts("stability", {"NODE": shaky, "ANODE (p=5)": few}) == [TOO_FEW, TOO_FEW]


def test_a_mixed_share_of_unstable_runs_is_tested_by_welch():
    some = {"unstable": s(2 / 3, math.sqrt(1 / 3), 3), "max_nfe_forward": s(500.0, 400.0, 3)}
    none = {"unstable": s(0.0, 0.0, 3), "max_nfe_forward": s(30.0, 1.0, 3)}
    # 2 of 3 against 0 of 3 is not significant at alpha = 0.05 with three repeats: inconclusive, not "holds"
    assert verdicts("stability", {"NODE": some, "ANODE (p=5)": none})[0] == INCONCLUSIVE


def test_augmentation_verdicts_pick_p_10_among_several_anodes():
    def level(its: float, nfe: float) -> dict:
        return {"iterations_to_level": {**s(its, 5.0, 3), "censored": 0, "runs": 3},
                "nfe_at_level": {**s(nfe, 1.0, 3), "censored": 0, "runs": 3}}

    metrics = {"NODE": level(200.0, 40.0), "ANODE (p=1)": level(20.0, 10.0), "ANODE (p=2)": level(400.0, 80.0),
               "ANODE (p=5)": level(300.0, 60.0), "ANODE (p=10)": level(50.0, 26.0)}
    assert verdicts("augmentation", metrics) == [HOLDS, HOLDS]
    metrics["ANODE (p=10)"] = level(300.0, 60.0)
    assert verdicts("augmentation", metrics) == [NOT_HOLD, NOT_HOLD]  # p = 1's fine numbers do not count
    cfg, _ = ri.image_experiment(None, budget="paper", experiment="augmentation")
    rows = evaluate_claims(ri._image_claims(cfg, "augmentation"), {cfg.name: cfg}, {cfg.name: aggregate(cfg, metrics)})
    assert "ANODE (p=10) 300" in rows[0].measured and "ratio 1.50" in rows[0].measured


def test_large_p_needs_both_higher_loss_and_higher_nfe():
    p10 = {"final_loss": s(0.2, 0.01, 3), "mean_nfe_forward": s(26.0, 1.0, 3)}
    p100 = {"final_loss": s(0.4, 0.01, 3), "mean_nfe_forward": s(40.0, 1.0, 3)}
    assert verdicts("large_p", {"ANODE (p=10)": p10, "ANODE (p=100)": p100}) == [HOLDS]
    same_nfe = {**p100, "mean_nfe_forward": s(26.0, 1.0, 3)}
    assert verdicts("large_p", {"ANODE (p=10)": p10, "ANODE (p=100)": same_nfe}) == [INCONCLUSIVE]
    assert verdicts("large_p", {"ANODE (p=10)": p100, "ANODE (p=100)": p10}) == [NOT_HOLD]


def test_weight_decay_verdicts_select_by_weight_decay():
    nfe = lambda mean, n=3: {"mean_nfe_forward": s(mean, 1.0, n)}
    metrics = {"NODE": nfe(40.0), "NODE + weight decay": nfe(30.0), "ANODE (p=5)": nfe(26.0), "ANODE (p=5) + weight decay": nfe(20.0)}
    assert verdicts("weight_decay", metrics) == [HOLDS, HOLDS]
    metrics["NODE + weight decay"] = nfe(45.0)
    assert verdicts("weight_decay", metrics) == [NOT_HOLD, HOLDS]
    metrics["ANODE (p=5) + weight decay"] = nfe(20.0, n=2)
    assert verdicts("weight_decay", metrics) == [NOT_HOLD, TOO_FEW]  # "does not hold" outranks "too few"


# ----------------------------------------------------------------------------- end to end on tiny IDX files


def smoke(tmp_path: Path, monkeypatch, experiment: str) -> dict:
    data = write_idx(tmp_path / "data")
    monkeypatch.setattr(ri, "image_experiment", shrunk({}))  # 4 filters a model
    out = tmp_path / "out"
    html = ri.reproduce_images(out, experiment=experiment, dataset="idx", data_dir=str(data), budget="smoke",
                               device="cpu", progress=False)
    assert html == out / "report.html" and (out / "report.md").is_file()
    summary = json.loads((out / "summary.json").read_text())
    assert summary["experiment"] == experiment and summary["budget"] == "smoke"
    assert summary["command"].startswith(f"anode reproduce images --experiment {experiment} --dataset idx --budget smoke")
    assert summary["claims"] and all(c["verdict"] in VERDICTS for c in summary["claims"])
    assert all(c["verdict"] == "too few repeats" or c["verdict"] == "not run" for c in summary["claims"])
    assert (out / experiment / "aggregate.json").is_file()
    md = (out / "report.md").read_text()
    for claim in summary["claims"]:
        assert claim["claim"] in md
    page = (out / "report.html").read_text()
    assert 'src="figures' not in page and "data:image/png;base64," in page
    return summary


@pytest.mark.parametrize("experiment", [
    "augmentation", "weight_decay",
    # about 30 s even at 4 filters: the p = 100 model integrates a 101 x 28 x 28 state
    pytest.param("large_p", marks=pytest.mark.slow),
])
def test_claim_experiment_end_to_end_fast(tmp_path, monkeypatch, experiment):
    summary = smoke(tmp_path, monkeypatch, experiment)
    cfg, _ = ri.image_experiment("idx", budget="smoke", experiment=experiment)
    assert [g["model"] for g in summary["aggregate"]["groups"]] == [m.name for m in cfg.models]
    assert all(g["completed"] == 1 for g in summary["aggregate"]["groups"])
    for fig in ("loss", "nfe", "nfe_vs_loss"):
        assert (tmp_path / "out" / "figures" / f"{fig}.png").is_file(), fig
    assert "## Every run" in (tmp_path / "out" / "report.md").read_text()


def test_stability_end_to_end_fast(tmp_path, monkeypatch):
    summary = smoke(tmp_path, monkeypatch, "stability")
    runs = summary["stability_runs"]
    assert set(runs) == {"NODE", "ANODE (p=5)"} and all(len(r) == 1 and r[0]["iterations"] == 2 for r in runs.values())
    assert summary["nfe_blowup"] == 1000
    for fig in ("stability_nfe", "stability_loss"):
        assert (tmp_path / "out" / "figures" / f"{fig}.png").is_file(), fig
    md = (tmp_path / "out" / "report.md").read_text()
    assert "## Figure 13: stability when overfitting" in md and "| model | seed | status |" in md
    assert "NFE blow-up threshold" in md


def test_cli_runs_a_claim_experiment(tmp_path, monkeypatch, capsys):
    data = write_idx(tmp_path / "data")
    monkeypatch.setattr(ri, "image_experiment", shrunk({}))
    out = tmp_path / "out"
    code = main(["reproduce", "images", "--experiment", "weight_decay", "--dataset", "idx", "--data-dir", str(data),
                 "--budget", "smoke", "--out", str(out), "--device", "cpu", "--no-progress"])
    assert code == 0 and (out / "report.md").is_file()
    assert "report:" in capsys.readouterr().out


def test_cli_table1_without_dataset_is_a_usage_error(tmp_path, capsys):
    with pytest.raises(SystemExit) as info:
        main(["reproduce", "images", "--experiment", "table1", "--budget", "smoke", "--out", str(tmp_path / "out")])
    assert info.value.code == 2
    assert "the following arguments are required: --dataset (with --experiment table1" in capsys.readouterr().err
