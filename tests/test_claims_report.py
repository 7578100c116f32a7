"""Tests of anode.claims (verdicts computed from aggregates), the loss-level metrics and anode.report."""

from __future__ import annotations

import re

import matplotlib

matplotlib.use("Agg")

import numpy as np
import pytest
from matplotlib.figure import Figure

from anode import History
from anode.claims import HOLDS, INCONCLUSIVE, NOT_HOLD, NOT_RUN, Claim, compare_lower, image_claims, toy_claims
from anode.plotting import save_figure
from anode.report import Section, machine_description, results_rows, write_report
from anode.reproduce_images import loss_level_metrics

METRICS = ("final_loss", "final_nfe_forward", "final_nfe_backward", "mean_nfe_forward", "nfe_growth",
           "eval_loss", "eval_accuracy", "time_per_iteration", "num_parameters")


def s(mean: float | None, std: float = 0.01, n: int = 5) -> dict:
    return {"mean": None, "std": None, "n": 0} if mean is None else {"mean": mean, "std": std, "n": n}


def group(dataset: str, model: str, **metrics: float) -> dict:
    """A group shaped like aggregate_experiment's output (unset metrics: never measured)."""
    out = {"dataset": dataset, "model": model, "completed": 5, "failed": 0, "failures": []}
    out.update({k: s(metrics.get(k)) for k in METRICS})
    return out


def toy_aggregates(holds: bool) -> dict:
    """Synthetic aggregates of the four toy experiments where every claim holds (or is reversed)."""
    good, bad = (0.01, 0.3) if holds else (0.3, 0.01)
    few, many = (20.0, 40.0) if holds else (40.0, 20.0)
    flat, growing = (1.0, 2.0) if holds else (2.0, 1.0)
    spheres = []
    for ds in ("spheres 1d", "spheres 2d"):
        spheres += [
            group(ds, "ResNet", final_loss=good, nfe_growth=float("nan"), mean_nfe_forward=0.0),
            group(ds, "NODE", final_loss=bad, nfe_growth=growing, mean_nfe_forward=many),
            group(ds, "ANODE (p=1)", final_loss=good, nfe_growth=flat, mean_nfe_forward=few),
        ]
    spheres.append(group("sines 2d", "NODE", final_loss=good if holds else 0.5))
    held = "spheres 2d, slice held out"
    return {
        "flow_g1d": {"groups": [
            group("identity", "NODE", final_loss=0.01 if holds else 0.5),
            group("g1d", "NODE", final_loss=1.0 if holds else 0.2),
            group("g1d", "ANODE (p=1)", final_loss=0.01 if holds else 0.5),
        ]},
        "spheres": {"groups": spheres},
        "generalisation": {"groups": [group(held, "NODE", eval_loss=0.4 if holds else 0.05),
                                      group(held, "ANODE (p=1)", eval_loss=0.05 if holds else 0.4)]},
        "weight_decay": {"groups": [
            group("spheres 2d", "NODE", mean_nfe_forward=many),
            group("spheres 2d", "NODE + weight decay", mean_nfe_forward=few),
            group("spheres 2d", "ANODE (p=1)", mean_nfe_forward=few),
            group("spheres 2d", "ANODE (p=1) + weight decay", mean_nfe_forward=few / 2 if holds else few * 2),
        ]},
    }


# ----------------------------------------------------------------------------- compare_lower


def test_compare_lower_both_directions():
    assert compare_lower(s(1.0), s(2.0)) == HOLDS
    assert compare_lower(s(2.0), s(1.0)) == NOT_HOLD


def test_compare_lower_within_noise_is_inconclusive():
    assert compare_lower(s(0.29, 0.1), s(0.30, 0.1)) == INCONCLUSIVE  # right way, within 2 SE
    assert compare_lower(s(0.31, 0.1), s(0.30, 0.1)) == INCONCLUSIVE  # wrong way, within 2 SE


def test_compare_lower_uses_standard_errors():
    # gap 0.1; SE = sqrt(2 * 0.1^2 / n): n = 5 -> 0.063 (2 SE > gap), n = 20 -> 0.032 (2 SE < gap)
    assert compare_lower(s(1.0, 0.1, 5), s(1.1, 0.1, 5)) == INCONCLUSIVE
    assert compare_lower(s(1.0, 0.1, 20), s(1.1, 0.1, 20)) == HOLDS
    assert compare_lower(s(1.1, 0.1, 20), s(1.0, 0.1, 20)) == NOT_HOLD


def test_compare_lower_single_repeats_and_ties():
    assert compare_lower(s(1.0, 0.0, 1), s(1.5, 0.0, 1)) == HOLDS
    assert compare_lower(s(1.5, 0.0, 1), s(1.0, 0.0, 1)) == NOT_HOLD
    assert compare_lower(s(1.0, 0.0, 1), s(1.0, 0.0, 1)) == NOT_HOLD  # no effect at all


def test_compare_lower_factor():
    assert compare_lower(s(0.4), s(1.0), factor=2.0) == HOLDS
    assert compare_lower(s(0.6), s(1.0), factor=2.0) == NOT_HOLD  # lower, but not half
    assert compare_lower(s(0.6), s(1.0)) == HOLDS


@pytest.mark.parametrize(("lower", "higher"), [(None, s(1.0)), (s(1.0), None), (s(None), s(1.0)), ({}, s(1.0))])
def test_compare_lower_not_run(lower, higher):
    assert compare_lower(lower, higher) == NOT_RUN


# ----------------------------------------------------------------------------- toy claims


def test_toy_claims_hold_when_the_paper_is_right():
    claims = toy_claims(toy_aggregates(holds=True))
    assert len(claims) == 9
    assert [c.verdict for c in claims] == [HOLDS] * 9, [(c.claim, c.measured) for c in claims if c.verdict != HOLDS]
    assert [c.source for c in claims] == ["flow_g1d", "flow_g1d", "spheres", "spheres", "spheres", "generalisation",
                                          "spheres", "spheres", "weight_decay"]
    assert all(isinstance(c, Claim) and c.criterion and c.measured for c in claims)


def test_toy_claims_do_not_hold_when_reversed():
    claims = toy_claims(toy_aggregates(holds=False))
    assert [c.verdict for c in claims] == [NOT_HOLD] * 9, [(c.claim, c.measured) for c in claims if c.verdict != NOT_HOLD]


def test_toy_claims_not_run_without_results():
    claims = toy_claims({})
    assert len(claims) == 9 and {c.verdict for c in claims} == {NOT_RUN}
    assert all("n/a" in c.measured for c in claims)


def test_toy_claims_partial_results():
    aggs = toy_aggregates(holds=True)
    claims = toy_claims({"flow_g1d": aggs["flow_g1d"]})
    assert [c.verdict for c in claims] == [HOLDS, HOLDS] + [NOT_RUN] * 7
    # a missing model inside a run experiment is "not run" too
    aggs["spheres"]["groups"] = [g for g in aggs["spheres"]["groups"] if g["model"] != "ResNet"]
    by_claim = {c.claim: c.verdict for c in toy_claims(aggs)}
    assert by_claim["ResNets fit g(x) easily, unlike NODEs (Fig. 5)."] == NOT_RUN
    assert sum(v == HOLDS for v in by_claim.values()) == 8


def test_toy_claim_measured_text_reports_the_numbers():
    claims = toy_claims(toy_aggregates(holds=True))
    assert "NODE 1 ± 0.01 (n=5), ANODE 0.01 ± 0.01 (n=5)" in claims[1].measured
    assert "(ratio 0.50)" in claims[4].measured


def test_toy_claim_mixed_dimensions_do_not_hold():
    aggs = toy_aggregates(holds=True)
    for g in aggs["spheres"]["groups"]:  # ANODE worse than NODE in d = 1 only
        if g["dataset"] == "spheres 1d" and g["model"] == "ANODE (p=1)":
            g["final_loss"] = s(0.9)
    assert toy_claims(aggs)[2].verdict == NOT_HOLD


# ----------------------------------------------------------------------------- image claims


def image_agg(acc_node: float, acc_anode: float) -> dict:
    return {"groups": [group("mnist", "NODE", eval_accuracy=acc_node), group("mnist", "ANODE (p=5)", eval_accuracy=acc_anode)]}


def test_image_claims_hold():
    claims = image_claims(image_agg(0.96, 0.98), node="NODE", anode="ANODE (p=5)", dataset="mnist", loss_level=0.1,
                          iterations_to_level={"NODE": s(100.0, 2.0), "ANODE (p=5)": s(50.0, 2.0)},
                          nfe_at_level={"NODE": s(30.0, 1.0), "ANODE (p=5)": s(20.0, 1.0)})
    assert len(claims) == 3 and [c.verdict for c in claims] == [HOLDS] * 3
    assert all(c.source == "mnist" for c in claims)
    assert "loss 0.1" in claims[0].measured and "ANODE 50 ± 2 (n=5) vs NODE 100 ± 2 (n=5)" in claims[0].measured


def test_image_claims_reversed():
    claims = image_claims(image_agg(0.98, 0.96), node="NODE", anode="ANODE (p=5)", dataset="mnist", loss_level=0.1,
                          iterations_to_level={"NODE": s(50.0, 2.0), "ANODE (p=5)": s(100.0, 2.0)},
                          nfe_at_level={"NODE": s(20.0, 1.0), "ANODE (p=5)": s(30.0, 1.0)})
    assert [c.verdict for c in claims] == [NOT_HOLD] * 3


def test_image_claims_not_run():
    claims = image_claims({"groups": []}, node="NODE", anode="ANODE (p=5)", dataset="mnist", loss_level=None,
                          iterations_to_level={}, nfe_at_level={})
    assert [c.verdict for c in claims] == [NOT_RUN] * 3
    assert "loss n/a" in claims[0].measured


# ----------------------------------------------------------------------------- loss-level metrics


def history(losses, nfe: float) -> History:
    return History(iterations=[{"iteration": i, "epoch": 0, "loss": float(v), "nfe_forward": nfe, "nfe_backward": 0,
                                "time": 0.01} for i, v in enumerate(losses)])


def test_loss_level_metrics_faster_model_reaches_the_level_first():
    t = np.arange(200)
    histories = {
        "slow": [history(np.exp(-0.01 * t) + 0.001 * k, 30.0) for k in range(2)],
        "fast": [history(np.exp(-0.05 * t) + 0.001 * k, 10.0) for k in range(2)],
    }
    level, iters, nfes = loss_level_metrics(histories)
    smooth_final = [np.mean(np.exp(-0.01 * t[-10:]) + 0.001 * k) for k in range(2)]
    assert level == pytest.approx(np.mean(smooth_final))  # the higher (slow model's) mean final loss
    assert iters["fast"]["n"] == 2 and iters["slow"]["n"] >= 1
    assert iters["fast"]["mean"] < iters["slow"]["mean"] / 3
    assert nfes["fast"]["mean"] == 10.0 and nfes["slow"]["mean"] == 30.0
    claims = image_claims(image_agg(0.9, 0.9), node="slow", anode="fast", dataset="mnist", loss_level=level,
                          iterations_to_level=iters, nfe_at_level=nfes)
    assert claims[0].verdict == HOLDS and claims[1].verdict == HOLDS


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
    claims = toy_claims(aggs)
    claims[0] = Claim("A claim with <markup> & a | pipe", "x", NOT_HOLD, "crit", "flow_g1d")
    section = Section("Figure 5 <loss>", "Mean ± std.", [("training loss", figure_png)])
    md_path, html_path = write_report(tmp_path, title="Toy <report>", summary=["budget: smoke", "machine: test"],
                                      claims=claims, aggregates=aggs, sections=[section])
    assert md_path == tmp_path / "report.md" and html_path == tmp_path / "report.html"

    md = md_path.read_text()
    assert md.startswith("# Toy <report>\n") and "- budget: smoke" in md
    assert "## Claims (8 holds, 1 does not hold)" in md
    assert "| paper claim | what we measured | criterion | holds? |" in md
    assert "A claim with <markup> & a \\| pipe" in md  # pipes escaped in the table
    assert "| The flow of a NODE fits" not in md  # replaced above
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
    claims = [Claim(f"c{i}", "m", v, "k", "x") for i, v in enumerate([HOLDS, INCONCLUSIVE, INCONCLUSIVE, NOT_RUN])]
    md_path, html_path = write_report(tmp_path / "out", title="T", summary=[], claims=claims, aggregates={}, sections=[])
    heading = next(line for line in md_path.read_text().splitlines() if line.startswith("## Claims"))
    assert "1 holds" in heading and "2 inconclusive" in heading and "does not hold" not in heading
    page = html_path.read_text()
    assert page.count(">not run</span>") == 1 and "src=" not in page


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

    line = machine_description("cpu")
    assert f"torch {torch.__version__}" in line and f"anode {anode.__version__}" in line and "CPU cores" in line


def test_report_tally_counts_not_run(tmp_path):
    claims = toy_claims({})
    md_path, _ = write_report(tmp_path, title="T", summary=[], claims=claims, aggregates={}, sections=[])
    assert "## Claims (9 not run)" in md_path.read_text()
