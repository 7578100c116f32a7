"""Re-judge the committed image reports made before the stated-test verdict rules (issue 8).

The reports in `docs/results/{mnist-small,mnist-gpu,cifar10-gpu}` were written by an anode whose
verdicts used a two-standard-error rule and dropped runs that never reached the loss level. Their
run folders (histories) were not committed, and the GPU runs cannot be repeated on the CPU machine,
so this script recomputes the verdicts from what *was* committed, with today's evaluator
(`anode.lab.claims.evaluate_claims`, configs/images/claims.toml):

- test accuracy: from the committed aggregate (exact mean, std, n);
- iterations to the loss level and NFE there: from the numbers printed in the old claim rows (3
  significant digits), at the old level (the higher of the two models' mean final losses: the
  histories needed for today's level are not committed). Runs that did not reach the level
  (completed runs minus n) are restored as censored: at the budget for the iterations (the
  budget is the iterations per run, read from `device-output.txt`, else from the summary), and
  by count for the NFE.

It rewrites each report's claim table, replaces the old verdict sentence, appends a section that
lists every verdict that changed and why, and stores the old rows in `summary.json` under
`claims_before_rejudging`. Run from the repository root: `python tools/rejudge_legacy_reports.py`.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

from anode.lab.claims import VERDICT_RULE, evaluate_claims, load_claims
from anode.lab.experiments.config import load_config, parse_config
from anode.lab.report import _md_table
from anode.lab.reproduce.toy import builtin_config

FOLDERS = ("mnist-small", "mnist-gpu", "cifar10-gpu")
_NUM = r"([-+0-9.e]+)"
_SIDE = rf"{_NUM}(?: ± {_NUM})? \(n=(\d+)\)"
_ROW = re.compile(rf"ANODE {_SIDE} vs NODE {_SIDE}")


def _stats(mean: str, std: str | None, n: str) -> dict:
    return {"mean": float(mean), "std": float(std) if std else 0.0, "n": int(n)}


def _pooled(reached: dict, censored: int, budget: float) -> dict:
    """Mean and sample std of `reached` plus `censored` values at `budget` (exact pooling)."""
    n, m, s = reached["n"], reached["mean"], reached["std"]
    total = n + censored
    mean = (n * m + censored * budget) / total
    ss = (n - 1) * s * s + n * (m - mean) ** 2 + censored * (budget - mean) ** 2
    return {"mean": mean, "std": (ss / (total - 1)) ** 0.5 if total > 1 else 0.0, "n": total, "censored": censored}


def _budget(folder: Path, summary: dict) -> float:
    log = folder / "device-output.txt"
    if log.exists():
        counts = [int(x) for x in re.findall(r", (\d+) it in ", log.read_text())]
        if counts:
            return float(max(counts))
    match = re.search(r"(\d+) iterations", summary["note"])
    if match is None:
        raise SystemExit(f"{folder}: cannot find the iterations per run")
    return float(match.group(1))


def _config(folder: Path, summary: dict):
    """The run's config with the roles of today's built-in config (matched by the old names)."""
    exp_dir = next(p for p in folder.iterdir() if (p / "experiment.json").exists())
    data = json.loads((exp_dir / "experiment.json").read_text())
    roles = {m.name: m.role for m in load_config(builtin_config(f"images/{data['name']}")).models}
    for m in data["models"]:
        m["role"] = roles[m["name"]]
    return parse_config(data)


def rejudge(folder: Path) -> list[tuple[str, str, str]]:
    """Recompute one folder's verdicts; returns (claim, old, new) for every claim."""
    summary = json.loads((folder / "summary.json").read_text())
    old = summary.get("claims_before_rejudging") or summary["claims"]
    cfg = _config(folder, summary)
    agg = summary["aggregate"]
    budget = _budget(folder, summary)
    level_rows = {"iterations_to_level": old[0]["measured"], "nfe_at_level": old[1]["measured"]}
    groups = []
    for g in agg["groups"]:
        g = dict(g)
        for metric, text in level_rows.items():
            match = _ROW.search(text)
            if match is None:
                raise SystemExit(f"{folder}: cannot read {metric} from {text!r}")
            side = match.groups()[:3] if g["model"] != "NODE" else match.groups()[3:]
            reached = _stats(*side)
            censored = g["completed"] - reached["n"]
            g[metric] = _pooled(reached, censored, budget) if metric == "iterations_to_level" else {**reached, "censored": censored}
            g[metric]["runs"] = g["completed"]
        groups.append(g)
    claims = evaluate_claims(load_claims(builtin_config("images/claims")), {cfg.name: cfg}, {cfg.name: {**agg, "groups": groups}})
    _write(folder, summary, old, claims, budget)
    return [(c.claim, o["verdict"], c.display) for c, o in zip(claims, old)]


def _why(old: str, new) -> str:
    if new.verdict == "too few repeats":
        return "fewer than 3 repeats a side: no verdict is drawn"
    if "tie with zero spread" in new.measured:
        return "a tie with zero spread (nothing measured) is inconclusive, not 'does not hold'"
    if "censored" in new.detail:
        return "the favoured model had more runs that never reached the level; they are counted, not dropped"
    return "the one-sided Welch t-test at alpha = 0.05 decides, not a two-standard-error gap"


def _write(folder: Path, summary: dict, old: list[dict], claims: list, budget: float) -> None:
    md = (folder / "report.md").read_text()
    head, rest = md.split("## Claims", 1)
    _, tail = rest.split("## Results", 1)
    head = re.sub(r"- Verdicts (?:are computed|re-judged)[^\n]*\n",
                  "- Verdicts re-judged on 2026-11-27 by `python tools/rejudge_legacy_reports.py` (see the last section). "
                  f"{VERDICT_RULE}\n",
                  head)
    counts: dict[str, int] = {}
    for c in claims:
        counts[c.verdict] = counts.get(c.verdict, 0) + 1
    table = _md_table(("paper claim", "what we measured", "criterion", "holds?"),
                      [(c.claim, c.measured, c.criterion, c.display) for c in claims])
    tail = tail.split("\n## Verdicts re-judged", 1)[0]
    changes = [f"- {c.claim} **{o['verdict']}** → **{c.display}**: {_why(o['verdict'], c)}." for c, o in zip(claims, old)
               if c.verdict != o["verdict"]]
    section = ["", "## Verdicts re-judged under the stated-test rules (2026-11-27)", "",
               "This report was made before anode's verdicts came from a stated test. Its run folders were not committed, so "
               "the verdicts above were recomputed by `python tools/rejudge_legacy_reports.py` from the committed numbers: test "
               "accuracy from the aggregate (exact); iterations and NFE at the loss level from the old rows (3 significant digits) "
               f"at the old level definition (the higher of the two models' mean final losses), with the runs that never reached "
               f"it restored as censored (iterations: at the budget of {budget:.0f} iterations per run). A rerun of the command "
               "at the top gives today's level (the highest final loss of the full-length runs).", ""]
    section += changes or ["- No verdict changed."]
    tally = ", ".join(f"{n} {v}" for v, n in counts.items())
    (folder / "report.md").write_text(f"{head}## Claims ({tally})\n\n{table}\n\n## Results{tail.rstrip()}\n" + "\n".join(section) + "\n")
    summary["claims_before_rejudging"] = old
    summary["claims"] = [c.to_dict() for c in claims]
    (folder / "summary.json").write_text(json.dumps(summary, indent=2, sort_keys=True) + "\n")


def main() -> int:
    root = Path("docs/results")
    if not root.is_dir():
        print("run from the repository root (docs/results not found)", file=sys.stderr)
        return 2
    for name in FOLDERS:
        for claim, old, new in rejudge(root / name):
            print(f"{name}: {claim} {old} -> {new}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
