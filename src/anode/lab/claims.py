"""The paper's claims as declared data, and the one evaluator that turns results into verdicts.

A claim (`ClaimSpec`, read from `configs/*/claims.toml`) is a sentence plus one or more tests.
A test compares a metric of two models (`better` vs `worse`) or of one model with a threshold, on
one or more datasets. Models are found by their declared **role** in the experiment config
("baseline", "augmented", "reference", optionally narrowed by `augment_dim`/`weight_decay`), never
by display name, so renaming a model changes nothing.

The verdict rule (`VERDICT_RULE`, printed in every report):

- "holds": a one-sided Welch t-test (for a threshold: a one-sided one-sample t-test) rejects "no
  difference" at α = 0.05, with at least 3 completed repeats per side;
- "does not hold": the same test rejects "no difference" at α = 0.05 in the opposite direction;
- "inconclusive": neither (a tie with zero spread included);
- "too few repeats (n = …)": fewer than 3 repeats on a side;
- "not run": the results are missing.

Nothing is dropped: a run that never reaches a loss level is censored at its budget, and a claim
cannot hold when the model it favours has more censored or failed runs than the other. Failed runs
are named in the row. A claim made of several tests holds only when every test holds; it does not
hold when any does not hold.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import tomllib

from anode.lab.experiments.config import METRICS, ClaimSpec, ExperimentConfig, Selector, TestSpec, check_claim, select_model
from anode.lab.experiments.schema import ConfigError, build
from anode.lab.stats import TTest, one_sample_one_sided, welch_one_sided

__all__ = [
    "ALPHA", "HOLDS", "INCONCLUSIVE", "METRICS", "MIN_REPEATS", "NOT_HOLD", "NOT_RUN", "TOO_FEW", "VERDICTS",
    "VERDICT_RULE", "Claim", "ClaimPart", "ClaimSpec", "Selector", "TestSpec", "check_claims", "evaluate_claims", "load_claims",
]

HOLDS, NOT_HOLD, INCONCLUSIVE, TOO_FEW, NOT_RUN = "holds", "does not hold", "inconclusive", "too few repeats", "not run"
VERDICTS = (HOLDS, NOT_HOLD, INCONCLUSIVE, TOO_FEW, NOT_RUN)
ALPHA = 0.05
MIN_REPEATS = 3
VERDICT_RULE = (
    f"A claim holds only when a one-sided Welch t-test (a one-sided one-sample t-test for a threshold) rejects "
    f"'no difference' at α = {ALPHA} with at least {MIN_REPEATS} completed repeats per side; it does not hold when the "
    f"same test rejects it in the opposite direction; otherwise it is inconclusive (ties with zero spread included); "
    f"with fewer than {MIN_REPEATS} repeats on a side it reads 'too few repeats'. Runs that never reach a loss level "
    "are censored at their budget, and a claim cannot hold when the model it favours has more censored or failed "
    "runs than the other; failed runs are named in the row."
)

#: Metrics whose comparison text adds the ratio of the two means.
_RATIO_METRICS = ("mean_nfe", "final_nfe", "max_nfe", "iterations_to_level", "nfe_at_level")

Stats = Mapping[str, Any]  # {"mean", "std", "n"[, "censored"]}


@dataclass(frozen=True)
class ClaimPart:
    """One test of a claim on one dataset: what it tests (`test`, the criterion; `dataset`, None when the
    test's selectors name their datasets), what was measured, and its own verdict and statistic."""

    test: str
    dataset: str | None
    measured: str
    verdict: str
    detail: str = ""

    @property
    def display(self) -> str:
        """The verdict with its statistic, e.g. "inconclusive (t = 1.2, df = 5.8, p = 0.14)"."""
        return f"{self.verdict} ({self.detail})" if self.detail else self.verdict


@dataclass(frozen=True)
class Claim:
    """One row of the report's claim table. `detail` qualifies the verdict (e.g. "n = 1 vs 1"); `parts` are
    the claim's tests, one per test and dataset, each with its own verdict (a claim holds when all hold)."""

    claim: str
    measured: str
    verdict: str
    criterion: str
    source: str
    detail: str = ""
    parts: tuple[ClaimPart, ...] = ()

    @property
    def display(self) -> str:
        """The verdict as shown in reports, e.g. "too few repeats (n = 1 vs 1)"."""
        return f"{self.verdict} ({self.detail})" if self.detail else self.verdict

    def to_dict(self) -> dict[str, Any]:
        """Plain data (`parts` as a list of dicts), as `summary.json` stores it."""
        return asdict(self)


def load_claims(path: str | os.PathLike[str]) -> list[ClaimSpec]:
    """Read `[[claims]]` from a TOML file (data only).

    Raises:
        FileNotFoundError: no such file.
        ConfigError: malformed claims (the key is named).
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no claims file at {path}")
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(f"{path}: cannot parse: {err}") from err
    raw = data.get("claims")
    if not isinstance(raw, list) or not raw:
        raise ConfigError(f"{path.name}: needs a non-empty list of [[claims]] tables")
    return [build(ClaimSpec, table, f"{path.name}.claims[{i}]") for i, table in enumerate(raw)]


# ----------------------------------------------------------------------------- finding the evidence


def _config(claim: ClaimSpec, configs: Mapping[str, ExperimentConfig]) -> ExperimentConfig | None:
    if claim.experiment is None:
        return next(iter(configs.values())) if len(configs) == 1 else None
    return configs.get(claim.experiment)


def check_claims(claims: Sequence[ClaimSpec], configs: Mapping[str, ExperimentConfig]) -> None:
    """Fail before any training when a claim cannot find its experiment, datasets or models.

    Raises:
        ConfigError: naming the claim and what is missing or ambiguous.
    """
    for claim in claims:
        config = _config(claim, configs)
        if config is None:
            raise ConfigError(f"claim {claim.claim!r}: no experiment {claim.experiment!r}; experiments: {sorted(configs)}")
        check_claim(claim, config)


def _group(agg: Mapping[str, Any] | None, dataset: str, model: str) -> Mapping[str, Any] | None:
    if agg is None:
        return None
    return next((g for g in agg["groups"] if g["dataset"] == dataset and g["model"] == model), None)


# ----------------------------------------------------------------------------- verdicts


@dataclass(frozen=True)
class _Side:
    """One side of a test: its label, statistics, and runs that failed or were censored."""

    label: str
    stats: Stats | None
    failed: int = 0

    @property
    def n(self) -> int:
        return int(self.stats.get("n") or 0) if self.stats and self.stats.get("mean") is not None else 0

    @property
    def censored(self) -> int:
        return int((self.stats or {}).get("censored") or 0)

    @property
    def lost(self) -> int:
        """Runs that count against this side: censored ones for a metric that censors (a run that
        failed before the level is censored there; one that failed after it did reach it), else
        failed ones."""
        return self.censored if "censored" in (self.stats or {}) else self.failed

    def summary(self) -> tuple[float, float, int]:
        """(mean, std, n); only called once `n` >= MIN_REPEATS."""
        stats = self.stats or {}
        return float(stats["mean"]), float(stats.get("std") or 0.0), self.n

    def text(self, digits: int = 3) -> str:
        notes = []
        if self.censored:
            notes.append(f"not reached {self.censored} of {int((self.stats or {}).get('runs') or self.n)}")
        if self.failed:
            notes.append(f"{self.failed} failed")
        tail = "; " + "; ".join(notes) if notes else ""
        if not self.n:
            return f"{self.label} n/a" + (f" ({tail[2:]})" if tail else "")
        mean, std = float(self.stats["mean"]), float(self.stats.get("std") or 0.0)  # type: ignore[index]
        spread = f" ± {std:.2g}" if self.n > 1 else ""
        return f"{self.label} {mean:.{digits}g}{spread} (n={self.n}{tail})"


def _judge(test: TTest) -> tuple[str, str]:
    if test.p < ALPHA:
        return HOLDS, test.describe()
    if test.p_opposite < ALPHA:
        return NOT_HOLD, test.describe()
    return INCONCLUSIVE, test.describe()


def _too_few(*sides: _Side) -> tuple[str, str] | None:
    if any(s.n == 0 for s in sides):
        return NOT_RUN, ""
    if any(s.n < MIN_REPEATS for s in sides):
        return TOO_FEW, "n = " + " vs ".join(str(s.n) for s in sides)
    return None


def compare(better: _Side, worse: _Side, *, lower_is_better: bool, factor: float = 1.0,
            margin: float = 0.0) -> tuple[str, str]:
    """Verdict and detail for "`better`'s metric beats `worse`'s" (with a `margin`: "is not worse by
    `margin` or more", a non-inferiority test; see the module docstring)."""
    early = _too_few(better, worse)
    if early:
        return early
    if lower_is_better:
        result = welch_one_sided(better.summary(), worse.summary(), factor=factor, margin=margin)
    else:  # better > worse - margin, i.e. worse < better + margin
        result = welch_one_sided(worse.summary(), better.summary(), factor=factor, margin=margin)
    verdict, detail = _judge(result)
    lost_b, lost_w = better.lost, worse.lost
    if verdict == HOLDS and lost_b > lost_w:
        return INCONCLUSIVE, f"{detail}; but {lost_b} censored or failed runs of the favoured model vs {lost_w}"
    return verdict, detail


def threshold(side: _Side, *, below: float | None = None, above: float | None = None) -> tuple[str, str]:
    """Verdict and detail for "the mean is below `below`" (or above `above`)."""
    early = _too_few(side)
    if early:
        return early
    bound = below if below is not None else above
    verdict, detail = _judge(one_sample_one_sided(side.summary(), float(bound), below=below is not None))  # type: ignore[arg-type]
    if verdict == HOLDS and side.lost:
        return INCONCLUSIVE, f"{detail}; but {side.lost} failed or censored runs"
    return verdict, detail


def _combine(parts: Sequence[tuple[str, str]]) -> tuple[str, str]:
    """All tests must hold; any "not run", "does not hold" or "too few" decides (in that order).

    The detail is the deciding part's for a single test, "too few" counts, or caveats ("but ...").
    """
    verdicts = [v for v, _ in parts]
    verdict = next((v for v in (NOT_RUN, NOT_HOLD, TOO_FEW) if v in verdicts), None)
    if verdict is None:
        verdict = HOLDS if all(v == HOLDS for v in verdicts) else INCONCLUSIVE
    details = [d for v, d in parts if v == verdict and d and (len(parts) == 1 or v == TOO_FEW or "; but " in d)]
    return verdict, details[0] if details else ""


def _criterion(test: TestSpec, config: ExperimentConfig, dataset: str | None = None) -> str:
    """The test in words; with `dataset`, as run on that dataset alone (a claim's part)."""
    what, lower_better = METRICS[test.metric]
    how = (f"one-sided Welch t-test, α = {ALPHA}, ≥ {MIN_REPEATS} repeats a side" if test.is_comparison
           else f"one-sided one-sample t-test, α = {ALPHA}, ≥ {MIN_REPEATS} repeats")
    where = f" on {dataset}" if dataset else f" on {', '.join(test.datasets)}" if test.datasets else ""  # else: selectors'/all
    if test.is_comparison:
        b, w = (_label(s, config) for s in (test.better, test.worse))  # type: ignore[arg-type]
        op = "<" if lower_better else ">"
        scale = "" if test.factor == 1 else (f" / {test.factor:g}" if lower_better else f" × {test.factor:g}")
        if test.margin:
            scale = f" {'+' if lower_better else '−'} {test.margin:g}"
            how = f"non-inferiority margin {test.margin:g}, {how}"
        return f"{what}{where}: {b} {op} {w}{scale} ({how})"
    bound, op = (test.below, "<") if test.below is not None else (test.above, ">")
    return f"{what}{where}: {_label(test.model, config)} {op} {bound:g} ({how})"  # type: ignore[arg-type]


def _label(sel: Selector, config: ExperimentConfig) -> str:
    model = select_model(sel, config)
    name = model.name if model is not None else f"[no {sel.describe()}]"
    return f"{name} on {sel.dataset}" if sel.dataset else name


def _side(sel: Selector, config: ExperimentConfig, agg: Mapping[str, Any] | None, dataset: str, metric: str) -> _Side:
    model = select_model(sel, config)
    if model is None:
        return _Side(f"[no {sel.describe()}]", None)
    group = _group(agg, sel.dataset or dataset, model.name)
    label = model.name + (f" on {sel.dataset}" if sel.dataset else "")
    if group is None:
        return _Side(label, None)
    return _Side(label, group.get(metric), int(group.get("failed") or 0))


def _datasets(test: TestSpec, config: ExperimentConfig) -> tuple[str | None, ...]:
    """Where a test runs: its datasets; None once when the selectors fix them; else every dataset."""
    if test.datasets:
        return test.datasets
    if any(s.dataset is not None for s in test.sides):
        return (None,)
    return tuple(d.name for d in config.datasets)


def _evaluate_test(test: TestSpec, config: ExperimentConfig, agg: Mapping[str, Any] | None) -> list[ClaimPart]:
    """The test's part on each dataset it runs on."""
    lower_better = METRICS[test.metric][1]
    parts = []
    for ds in _datasets(test, config):
        if test.is_comparison:
            b = _side(test.better, config, agg, ds, test.metric)  # type: ignore[arg-type]
            w = _side(test.worse, config, agg, ds, test.metric)  # type: ignore[arg-type]
            verdict = compare(b, w, lower_is_better=lower_better, factor=test.factor, margin=test.margin)
            text = f"{b.text()} vs {w.text()}"
            if test.metric.startswith(_RATIO_METRICS) and b.n and w.n and float(w.stats["mean"]):  # type: ignore[index]
                text += f", ratio {float(b.stats['mean']) / float(w.stats['mean']):.2f}"  # type: ignore[index]
        else:
            m = _side(test.model, config, agg, ds, test.metric)  # type: ignore[arg-type]
            verdict = threshold(m, below=test.below, above=test.above)
            text = f"{m.text()} vs {test.below if test.below is not None else test.above:g}"
        parts.append(ClaimPart(_criterion(test, config, ds), ds, text, *verdict))
    return parts


def evaluate_claims(claims: Sequence[ClaimSpec], configs: Mapping[str, ExperimentConfig],
                    aggregates: Mapping[str, Mapping[str, Any]]) -> list[Claim]:
    """Evaluate every claim against the aggregates of the experiments it names.

    Arguments:
        claims: declared claims (see `load_claims`).
        configs: experiment name -> its config (where roles are declared).
        aggregates: experiment name -> aggregate (`aggregate_experiment`'s output, possibly with
            extra metrics such as `iterations_to_level`); a missing experiment gives "not run".

    Returns:
        One `Claim` row per claim.

    Raises:
        ConfigError: a selector matching several models (a config error, never a verdict).
    """
    rows = []
    for claim in claims:
        config = _config(claim, configs)
        source = claim.experiment or (config.name if config else "?")
        if config is None:
            rows.append(Claim(claim.claim, "n/a (experiment not configured)", NOT_RUN, "", source))
            continue
        agg = aggregates.get(config.name)
        parts = [part for test in claim.tests for part in _evaluate_test(test, config, agg)]
        verdict, detail = _combine([(part.verdict, part.detail) for part in parts])
        criterion = "; and ".join(_criterion(t, config) for t in claim.tests)
        rows.append(Claim(claim.claim, "; ".join(_measured(part) for part in parts), verdict, criterion, source, detail,
                          tuple(parts) if len(parts) > 1 else ()))
    return rows


def _measured(part: ClaimPart) -> str:
    """A part's measurement as the claim's "what we measured" cell shows it: its dataset, numbers and statistic."""
    prefix = f"{part.dataset}: " if part.dataset else ""
    return f"{prefix}{part.measured}" + (f" [{part.detail}]" if part.detail and part.verdict != TOO_FEW else "")
