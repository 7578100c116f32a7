"""The paper's claims as functions of measured results, each with a computed verdict.

Verdicts are never written by hand: each claim states its criterion, reads the aggregates
(mean, std, n across repeats) and returns "holds", "does not hold", "inconclusive" (the effect
points the right way but is within noise) or "not run" (the experiment's results are missing).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

__all__ = ["Claim", "HOLDS", "INCONCLUSIVE", "NOT_HOLD", "NOT_RUN", "compare_lower", "toy_claims", "image_claims"]

HOLDS, NOT_HOLD, INCONCLUSIVE, NOT_RUN = "holds", "does not hold", "inconclusive", "not run"

Stats = Mapping[str, Any]  # {"mean", "std", "n"}
Aggregates = Mapping[str, Mapping[str, Any]]  # experiment name -> aggregate


@dataclass(frozen=True)
class Claim:
    """One row of the report's claim table."""

    claim: str
    measured: str
    verdict: str
    criterion: str
    source: str

    def to_dict(self) -> dict[str, str]:
        return asdict(self)


def _fmt(stats: Stats | None, digits: int = 3) -> str:
    if not stats or stats.get("mean") is None:
        return "n/a"
    if stats.get("n", 0) > 1:
        return f"{stats['mean']:.{digits}g} ± {stats['std']:.2g} (n={stats['n']})"
    return f"{stats['mean']:.{digits}g} (n={stats.get('n', 0)})"


def compare_lower(lower: Stats | None, higher: Stats | None, *, factor: float = 1.0) -> str:
    """Verdict for "`lower` is below `higher` / factor" from two {mean, std, n} summaries.

    Holds when the gap exceeds two standard errors (or is positive with a single repeat each);
    does not hold when it is negative beyond two standard errors (or negative at all with single
    repeats); otherwise inconclusive. `factor` > 1 asks for `lower` to be `factor` times smaller.
    """
    if not lower or not higher or lower.get("mean") is None or higher.get("mean") is None:
        return NOT_RUN
    gap = higher["mean"] / factor - lower["mean"]
    se = math.sqrt(lower["std"] ** 2 / max(lower["n"], 1) + (higher["std"] / factor) ** 2 / max(higher["n"], 1))
    if gap > 2 * se and gap > 0:
        return HOLDS
    if gap < -2 * se or (se == 0 and gap <= 0):
        return NOT_HOLD
    return INCONCLUSIVE


def _combine(verdicts: list[str]) -> str:
    if not verdicts or NOT_RUN in verdicts:
        return NOT_RUN
    if NOT_HOLD in verdicts:
        return NOT_HOLD
    return HOLDS if all(v == HOLDS for v in verdicts) else INCONCLUSIVE


def _group(aggs: Aggregates, experiment: str, dataset: str, model: str) -> Mapping[str, Any] | None:
    agg = aggs.get(experiment)
    if agg is None:
        return None
    return next((g for g in agg["groups"] if g["dataset"] == dataset and g["model"] == model), None)


def _metric(aggs: Aggregates, experiment: str, dataset: str, model: str, metric: str) -> Stats | None:
    group = _group(aggs, experiment, dataset, model)
    return None if group is None else group.get(metric)


def _threshold(stats: Stats | None, *, below: float | None = None, above: float | None = None) -> str:
    if not stats or stats.get("mean") is None:
        return NOT_RUN
    ok = (below is None or stats["mean"] < below) and (above is None or stats["mean"] >= above)
    return HOLDS if ok else NOT_HOLD


NODE, ANODE, RESNET = "NODE", "ANODE (p=1)", "ResNet"


def toy_claims(aggs: Aggregates) -> list[Claim]:
    """Claims of the low-dimensional experiments (Sections 3, 4.1, 5.1; Figs. 3, 5, 7, 8, 9)."""
    claims: list[Claim] = []
    m = lambda exp, ds, model, metric="final_loss": _metric(aggs, exp, ds, model, metric)  # noqa: E731

    ident = m("flow_g1d", "identity", NODE)
    claims.append(Claim(
        "The flow of a NODE fits the identity map (Sec. 3).", f"final MSE of the NODE flow on the identity: {_fmt(ident)}",
        _threshold(ident, below=0.05), "mean final MSE < 0.05", "flow_g1d"))
    node_g, anode_g = m("flow_g1d", "g1d", NODE), m("flow_g1d", "g1d", ANODE)
    claims.append(Claim(
        "A NODE cannot represent g1d(x) = -x; with one augmented dimension it can (Prop. 1, Fig. 3).",
        f"final MSE on g1d: NODE {_fmt(node_g)}, ANODE {_fmt(anode_g)}",
        _combine([_threshold(node_g, above=0.9), _threshold(anode_g, below=0.05)]),
        "NODE mean final MSE >= 0.9 (an exact flow cannot go below 1) and ANODE mean final MSE < 0.05", "flow_g1d"))

    parts, verdicts = [], []
    for ds in ("spheres 1d", "spheres 2d"):
        a, n = m("spheres", ds, ANODE), m("spheres", ds, NODE)
        parts.append(f"{ds}: ANODE {_fmt(a)} vs NODE {_fmt(n)}")
        verdicts.append(compare_lower(a, n))
    claims.append(Claim(
        "ANODE reaches a lower training loss than NODE on g(x) in d = 1 and d = 2 (Fig. 7).", "; ".join(parts),
        _combine(verdicts), "final Huber loss: ANODE below NODE by more than two standard errors, in both d", "spheres"))

    parts, verdicts = [], []
    for ds in ("spheres 1d", "spheres 2d"):
        a, n = m("spheres", ds, ANODE, "nfe_growth"), m("spheres", ds, NODE, "nfe_growth")
        parts.append(f"{ds}: NFE(last 10%)/NFE(first 10%) NODE {_fmt(n)}, ANODE {_fmt(a)}")
        verdicts.append(_combine([compare_lower(a, n), _threshold(a, below=1.25)]))
    claims.append(Claim(
        "NODE's NFE grows during training while ANODE's stays nearly flat (Fig. 8).", "; ".join(parts), _combine(verdicts),
        "ANODE's NFE growth ratio below NODE's by two standard errors, and ANODE's below 1.25, in both d", "spheres"))

    parts, verdicts = [], []
    for ds in ("spheres 1d", "spheres 2d"):
        a, n = m("spheres", ds, ANODE, "mean_nfe_forward"), m("spheres", ds, NODE, "mean_nfe_forward")
        ratio = f" (ratio {a['mean'] / n['mean']:.2f})" if a and n and a.get("mean") and n.get("mean") else ""
        parts.append(f"{ds}: mean forward NFE ANODE {_fmt(a)} vs NODE {_fmt(n)}{ratio}")
        verdicts.append(compare_lower(a, n))
    claims.append(Claim(
        "ANODE needs fewer function evaluations than NODE (Fig. 8; about half in the paper).", "; ".join(parts),
        _combine(verdicts), "mean forward NFE over training: ANODE below NODE by two standard errors, in both d", "spheres"))

    held = "spheres 2d, slice held out"
    a, n = m("generalisation", held, ANODE, "eval_loss"), m("generalisation", held, NODE, "eval_loss")
    claims.append(Claim(
        "ANODE generalises better: its validation loss on the held-out slice [0, pi/5] is far below NODE's (Fig. 9).",
        f"held-out Huber loss: ANODE {_fmt(a)} vs NODE {_fmt(n)}", compare_lower(a, n, factor=2.0),
        "ANODE's mean held-out loss below half of NODE's, by two standard errors", "generalisation"))

    parts, verdicts = [], []
    for ds in ("spheres 1d", "spheres 2d"):
        r, n = m("spheres", ds, RESNET), m("spheres", ds, NODE)
        parts.append(f"{ds}: ResNet {_fmt(r)} vs NODE {_fmt(n)}")
        verdicts.append(_combine([compare_lower(r, n), _threshold(r, below=0.05)]))
    claims.append(Claim(
        "ResNets fit g(x) easily, unlike NODEs (Fig. 5).", "; ".join(parts), _combine(verdicts),
        "ResNet mean final loss < 0.05 and below NODE's by two standard errors, in both d", "spheres"))

    s, g = m("spheres", "sines 2d", NODE), m("spheres", "spheres 2d", NODE)
    claims.append(Claim(
        "NODEs fit the separable (shifted sines) data; only g(x) is hard for them (Fig. 5).",
        f"NODE final loss: sines {_fmt(s)} vs spheres {_fmt(g)}", compare_lower(s, g),
        "NODE's final loss on sines below its loss on g(x) by two standard errors", "spheres"))

    parts, verdicts = [], []
    for base in (NODE, ANODE):
        w, b = m("weight_decay", "spheres 2d", f"{base} + weight decay", "mean_nfe_forward"), m("weight_decay", "spheres 2d", base, "mean_nfe_forward")
        parts.append(f"{base}: mean NFE {_fmt(b)} without, {_fmt(w)} with weight decay")
        verdicts.append(compare_lower(w, b))
    claims.append(Claim(
        "Weight decay lowers the NFE of both NODE and ANODE (Sec. 5.1).", "; ".join(parts), _combine(verdicts),
        "mean forward NFE with weight decay below that without, by two standard errors, for both", "weight_decay"))
    return claims


def image_claims(agg: Mapping[str, Any], *, node: str, anode: str, dataset: str,
                 loss_level: float | None, iterations_to_level: Mapping[str, Stats | None],
                 nfe_at_level: Mapping[str, Stats | None]) -> list[Claim]:
    """Claims of the image experiments (Sec. 5.2, Figs. 10-12, Table 1) for one dataset.

    Arguments:
        agg: the experiment's aggregate.
        node, anode: model names.
        dataset: dataset name in the aggregate.
        loss_level: the training loss both models are compared at (None if not reached by both).
        iterations_to_level, nfe_at_level: per model, iterations needed to reach `loss_level` and
            the forward NFE there (across repeats).
    """
    aggs = {"images": agg}
    acc_a, acc_n = (_metric(aggs, "images", dataset, x, "eval_accuracy") for x in (anode, node))
    it_a, it_n = iterations_to_level.get(anode), iterations_to_level.get(node)
    nfe_a, nfe_n = nfe_at_level.get(anode), nfe_at_level.get(node)
    level = f"{loss_level:.3g}" if loss_level is not None else "n/a"
    neg = lambda s: None if not s or s.get("mean") is None else {**s, "mean": -s["mean"]}  # noqa: E731
    return [
        Claim("ANODE reaches a given training loss in fewer iterations than NODE (Fig. 10).",
              f"iterations to reach loss {level}: ANODE {_fmt(it_a)} vs NODE {_fmt(it_n)}", compare_lower(it_a, it_n),
              "iterations to the loss level: ANODE below NODE by two standard errors", dataset),
        Claim("ANODE needs fewer NFEs than NODE at equal loss (Fig. 11).",
              f"forward NFE at loss {level}: ANODE {_fmt(nfe_a)} vs NODE {_fmt(nfe_n)}", compare_lower(nfe_a, nfe_n),
              "forward NFE when the loss level is first reached: ANODE below NODE by two standard errors", dataset),
        Claim("ANODE's test accuracy is higher than NODE's (Table 1).",
              f"test accuracy: ANODE {_fmt(acc_a, 4)} vs NODE {_fmt(acc_n, 4)}", compare_lower(neg(acc_a), neg(acc_n)),
              "mean test accuracy: ANODE above NODE by two standard errors", dataset),
    ]
