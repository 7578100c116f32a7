"""Two reports' verdicts side by side: does a rerun (another machine, another commit) reach the same
verdict on every claim?

A report folder is one written by `anode reproduce toy` or `anode reproduce images` (its
`summary.json` holds the claims). Claims are matched by their text; a claim in one report only is a
difference. The numbers behind a verdict may differ in their last digits between machines (the CPU's
model changes floating-point results, and training amplifies them), so the comparison is of
verdicts, with each side's test statistic shown.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from anode.history import read_json

__all__ = ["ClaimPair", "compare_reports", "format_comparison"]

#: What a side shows for a claim that its report does not have.
ABSENT = "absent"


@dataclass(frozen=True)
class ClaimPair:
    """One claim in both reports.

    Attributes:
        claim: the claim's text.
        verdicts: its verdict in the first and the second report (`ABSENT` where missing).
        details: the test statistic behind each verdict (e.g. "t = 2.1, df = 3.7, p = 0.057"), or "".
        parts: for a claim of several tests, one pair per part (its test and dataset as `claim`), matched by
            position; a report written before anode 0.2.0 has no parts (`ABSENT`).
    """

    claim: str
    verdicts: tuple[str, str]
    details: tuple[str, str]
    parts: tuple[ClaimPair, ...] = ()

    @property
    def same(self) -> bool:
        return self.verdicts[0] == self.verdicts[1]


def _claims(folder: Path) -> tuple[dict[str, dict[str, Any]], str]:
    path = folder / "summary.json"
    if not path.is_file():
        raise FileNotFoundError(f"no summary.json in {folder}: pass a folder written by `anode reproduce toy`, `anode experiment` or "
                                "`anode reproduce images` (its report finished)")
    summary = read_json(path)
    if not isinstance(summary.get("claims"), list):
        raise ValueError(f"{path} has no list of claims: it is not a reproduction report's summary "
                         "(rerun the reproduction to rewrite it)")
    claims: dict[str, dict[str, Any]] = {}
    for item in summary["claims"]:
        text = str(item["claim"])
        if text in claims:  # the same claim judged on two sources: tell them apart
            text = f"{text} [{item.get('source', len(claims))}]"
        claims[text] = item
    return claims, str(summary.get("machine") or summary.get("device") or "machine not recorded")


def compare_reports(first: str | os.PathLike[str], second: str | os.PathLike[str]) -> tuple[list[ClaimPair], tuple[str, str]]:
    """Each claim's verdict in two reports, in the first report's order (claims only the second has last).

    Arguments:
        first, second: report folders (each with the `summary.json` a reproduction writes).

    Returns:
        The claim pairs, and the machine line each report recorded.

    Raises:
        FileNotFoundError: a folder has no `summary.json`.
        ValueError: a `summary.json` without claims.
    """
    (a, machine_a), (b, machine_b) = _claims(Path(first)), _claims(Path(second))
    pairs = []
    for text in [*a, *(t for t in b if t not in a)]:
        sides = (a.get(text, {}), b.get(text, {}))
        pairs.append(ClaimPair(text, tuple(s.get("verdict", ABSENT) for s in sides),  # type: ignore[arg-type]
                               tuple(str(s.get("detail", "")) for s in sides), _part_pairs(*sides)))  # type: ignore[arg-type]
    return pairs, (machine_a, machine_b)


def _part_pairs(first: dict[str, Any], second: dict[str, Any]) -> tuple[ClaimPair, ...]:
    """The parts of one claim in two reports, matched by position."""
    a, b = list(first.get("parts") or []), list(second.get("parts") or [])
    out = []
    for i in range(max(len(a), len(b))):
        sides = (a[i] if i < len(a) else {}, b[i] if i < len(b) else {})
        named = next(s for s in sides if s)
        where = f" ({named['dataset']})" if named.get("dataset") else ""
        out.append(ClaimPair(f"↳ part {i + 1}{where}: {named.get('test', '')}",
                             tuple(s.get("verdict", ABSENT) for s in sides),  # type: ignore[arg-type]
                             tuple(str(s.get("detail", "")) for s in sides)))  # type: ignore[arg-type]
    return tuple(out)


def format_comparison(pairs: list[ClaimPair], machines: tuple[str, str], names: tuple[str, str]) -> str:
    """A markdown table of the verdicts, differing rows marked, and a closing count."""
    lines = [f"- {names[0]}: {machines[0]}", f"- {names[1]}: {machines[1]}", "",
             f"| differs | claim | {names[0]} | {names[1]} |", "|---|---|---|---|"]
    for pair in pairs:
        for row in (pair, *pair.parts):
            cells = [f"{v} ({d})" if d else v for v, d in zip(row.verdicts, row.details)]
            mark = "" if row.same or (row in pair.parts and ABSENT in row.verdicts) else "≠"
            lines.append(f"| {mark} | {row.claim} | {cells[0]} | {cells[1]} |")
    differing = sum(not p.same for p in pairs)
    # a part is compared where both reports list it (a report written before anode 0.2.0 lists no parts)
    parts = [part for pair in pairs for part in pair.parts if ABSENT not in part.verdicts]
    lines += ["", f"verdicts_compared: {len(pairs)}", f"verdicts_differing: {differing}",
              f"parts_compared: {len(parts)}", f"parts_differing: {sum(not p.same for p in parts)}"]
    return "\n".join(lines) + "\n"
