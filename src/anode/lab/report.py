"""Reports: a self-contained HTML page (figures embedded) and a Markdown file beside PNG figures."""

from __future__ import annotations

import base64
import html
import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from anode.history import atomic_write
from anode.lab.claims import HOLDS, INCONCLUSIVE, NOT_HOLD, TOO_FEW, VERDICTS, Claim
from anode.lab.environment import machine_description

__all__ = ["NO_CLAIMS", "Section", "claim_rows", "machine_description", "results_rows", "run_counts", "runs_line", "summary_run_counts",
           "write_report"]


@dataclass
class Section:
    """A titled group of figures (PNG paths) with a caption each, and optionally a table (header, rows)."""

    title: str
    text: str = ""
    figures: list[tuple[str, Path]] = field(default_factory=list)
    table: tuple[Sequence[str], Sequence[Sequence[str]]] | None = None


def _cell(stats: Mapping[str, Any] | None, digits: int = 4) -> str:
    if not stats or stats.get("mean") is None:
        return "–"
    if stats.get("n", 0) > 1:
        return f"{stats['mean']:.{digits}g} ± {stats['std']:.2g}"
    return f"{stats['mean']:.{digits}g}"


NO_CLAIMS = "No claims are declared for this experiment."

RESULT_COLUMNS = ("experiment", "dataset", "model", "runs (ok/failed)", "params", "last-epoch loss", "mean NFE",
                  "final NFE", "NFE growth", "eval loss", "eval accuracy", "s / iteration")


def results_rows(aggregates: Mapping[str, Mapping[str, Any]]) -> list[list[str]]:
    """Rows of the results table (mean ± std across completed repeats) for every experiment group."""
    rows = []
    for name, agg in aggregates.items():
        for g in agg["groups"]:
            params = g["num_parameters"]["mean"]
            rows.append([
                name, g["dataset"], g["model"], f"{g['completed']}/{g['failed']}",
                f"{params:,.0f}" if params is not None else "–", _cell(g["final_loss"]), _cell(g["mean_nfe_forward"], 3),
                _cell(g["final_nfe_forward"], 3), _cell(g["nfe_growth"], 3), _cell(g["eval_loss"]),
                _cell(g["eval_accuracy"]), _cell(g["time_per_iteration"], 2),
            ])
    return rows


def run_counts(aggregates: Mapping[str, Mapping[str, Any]]) -> tuple[int, int]:
    """Runs that failed and runs that finished (completed or failed), summed over every group.

    Arguments:
        aggregates: experiment name -> aggregate (as written to `aggregate.json`).

    Returns:
        (failed, finished).
    """
    groups = [g for agg in aggregates.values() for g in agg["groups"]]
    failed = sum(int(g["failed"]) for g in groups)
    return failed, failed + sum(int(g["completed"]) for g in groups)


def summary_run_counts(out_dir: str | os.PathLike[str]) -> tuple[int, int]:
    """(failed, finished) runs of a reproduction, read from the `summary.json` it wrote in `out_dir`.

    Raises:
        FileNotFoundError: no `summary.json` in `out_dir`.
        ValueError: a `summary.json` with neither `aggregates` (toy) nor `aggregate` (images).
    """
    path = Path(out_dir) / "summary.json"
    if not path.exists():
        raise FileNotFoundError(f"no summary.json in {out_dir}: the reproduction did not finish writing its report")
    summary = json.loads(path.read_text(encoding="utf-8"))
    if "aggregates" in summary:
        return run_counts(summary["aggregates"])
    if "aggregate" in summary:
        return run_counts({"images": summary["aggregate"]})
    raise ValueError(f"{path} has neither 'aggregates' nor 'aggregate'; rerun the reproduction to rewrite it")


def runs_line(aggregates: Mapping[str, Mapping[str, Any]]) -> str:
    """The report's summary line on finished and failed runs."""
    failed, finished = run_counts(aggregates)
    line = f"Runs finished: {finished}, of which {failed} failed"
    return line + (" (each failed run's reason is in its result.json under runs/; statistics use the completed runs)." if failed else ".")


_BADGE = {HOLDS: "#1a7f37", NOT_HOLD: "#cf222e", INCONCLUSIVE: "#9a6700", TOO_FEW: "#8250df"}


def _md_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    esc = lambda s: str(s).replace("|", "\\|").replace("\n", " ")  # noqa: E731
    lines = ["| " + " | ".join(map(esc, header)) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(map(esc, row)) + " |" for row in rows]
    return "\n".join(lines)


def _html_table(header: Sequence[str], rows: Sequence[Sequence[str]], *, raw_last: bool = False) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = []
    for row in rows:
        cells = [f"<td>{html.escape(str(c))}</td>" for c in row]
        if raw_last:
            cells[-1] = f"<td>{row[-1]}</td>"
        body.append("<tr>" + "".join(cells) + "</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


_CSS = ("""body{font-family:system-ui,sans-serif;max-width:1200px;margin:2em auto;padding:0 1em;color:#1f2328}
table{border-collapse:collapse;margin:1em 0;font-size:0.9em}td,th{border:1px solid #d0d7de;padding:4px 8px;vertical-align:top}
th{background:#f6f8fa}.fig{display:inline-block;margin:6px;text-align:center;max-width:48%}.fig img{max-width:100%}
.fig p{font-size:0.85em;margin:2px}.badge{color:#fff;padding:1px 6px;border-radius:4px;white-space:nowrap}"""
        "code{background:#f6f8fa;padding:1px 4px}")


def claim_rows(claims: Sequence[Claim]) -> list[tuple[tuple[str, str, str, str], str]]:
    """The claim table's rows with each row's verdict: a claim's row, then, for a claim of several tests,
    one row per part ("↳ part i of n (dataset)") with that test's own measurement, criterion and verdict.

    Arguments:
        claims: the judged claims.

    Returns:
        ((claim, what we measured, criterion, verdict shown), verdict) per row.
    """
    out = []
    for claim in claims:
        out.append(((claim.claim, claim.measured, claim.criterion, claim.display), claim.verdict))
        for i, part in enumerate(claim.parts, 1):
            where = f" ({part.dataset})" if part.dataset else ""
            out.append(((f"↳ part {i} of {len(claim.parts)}{where}", part.measured, part.test, part.display), part.verdict))
    return out


def write_report(
    out_dir: str | os.PathLike[str],
    *,
    title: str,
    summary: Sequence[str],
    claims: Sequence[Claim],
    aggregates: Mapping[str, Mapping[str, Any]],
    sections: Sequence[Section],
) -> tuple[Path, Path]:
    """Write `report.md` and a self-contained `report.html` into `out_dir`.

    Arguments:
        out_dir: destination; figure paths are linked relative to it in Markdown and embedded in HTML.
        title: page title.
        summary: lines describing what was run (budget, command, machine, wall time).
        claims: the claim table's rows; with none, the page says `NO_CLAIMS` instead of a table.
        aggregates: experiment name -> aggregate (for the results table).
        sections: figure groups.

    Returns:
        (markdown path, html path).
    """
    out = Path(out_dir)
    claim_header = ("paper claim", "what we measured", "criterion", "holds?")
    judged = claim_rows(claims)
    rows = results_rows(aggregates)
    counts = {v: sum(c.verdict == v for c in claims) for v in VERDICTS}
    tally = ", ".join(f"{n} {v}" for v, n in counts.items() if n)

    claims_title = f"Claims ({tally})" if claims else "Claims"
    md = [f"# {title}", "", *[f"- {line}" for line in summary], "", f"## {claims_title}", "",
          _md_table(claim_header, [row for row, _ in judged]) if claims else NO_CLAIMS, "",
          "## Results (mean ± std over completed repeats)", "", _md_table(RESULT_COLUMNS, rows), ""]
    for sec in sections:
        md += [f"## {sec.title}", "", sec.text, ""] if sec.text else [f"## {sec.title}", ""]
        if sec.table is not None:
            md += [_md_table(*sec.table), ""]
        for caption, path in sec.figures:
            md += [f"![{caption}]({os.path.relpath(path, out)})", f"*{caption}*", ""]
    md_path = atomic_write(out / "report.md", lambda fh: fh.write("\n".join(md).encode()))

    def badge(verdict: str, display: str) -> str:
        colour = _BADGE.get(verdict, "#57606a")
        return f'<span class="badge" style="background:{colour}">{html.escape(display)}</span>'

    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title><style>{_CSS}</style></head><body>",
             f"<h1>{html.escape(title)}</h1><ul>" + "".join(f"<li>{html.escape(s)}</li>" for s in summary) + "</ul>",
             f"<h2>{html.escape(claims_title)}</h2>",
             _html_table(claim_header, [(*row[:3], badge(verdict, row[3])) for row, verdict in judged], raw_last=True) if claims
             else f"<p>{html.escape(NO_CLAIMS)}</p>",
             "<h2>Results (mean ± std over completed repeats)</h2>", _html_table(RESULT_COLUMNS, rows)]
    for sec in sections:
        parts.append(f"<h2>{html.escape(sec.title)}</h2>" + (f"<p>{html.escape(sec.text)}</p>" if sec.text else ""))
        if sec.table is not None:
            parts.append(_html_table(*sec.table))
        for caption, path in sec.figures:
            data = base64.b64encode(Path(path).read_bytes()).decode()
            mime = "image/gif" if str(path).endswith(".gif") else "image/png"
            parts.append(f'<div class="fig"><img src="data:{mime};base64,{data}" alt="{html.escape(caption)}">'
                         f'<p>{html.escape(caption)}</p></div>')
    parts.append("</body></html>")
    html_path = atomic_write(out / "report.html", lambda fh: fh.write("\n".join(parts).encode()))
    return md_path, html_path
