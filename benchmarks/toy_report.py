"""Wall and CPU time of the toy reproduction report, optionally side by side with another revision.

Each run is a fresh `python -m anode reproduce toy --out TMP --no-progress` in a subprocess, from
this checkout's `src` and, with `--against REV`, from that git revision's `src` (exported with
`git archive`); the variants alternate, run by run, so that both see the same phases of the machine
(on a shared 2-core machine the same command's time varies by half from one hour to the next:
compare only runs made side by side). Wall time is the report's own (`summary.json`,
`wall_time_s`); CPU time is user + system time of the command and its worker processes.

    python benchmarks/toy_report.py [--runs 2] [--against REV] [--reference docs/results/toy] [--budget default]

Prints one line per run, then (last lines, `name: value`):

* `report_seconds`, `report_cpu_seconds`: medians over this checkout's runs;
* `within_2_min`: true when every run of this checkout took at most 120 s;
* with `--against`: `against_seconds`, `against_cpu_seconds` and the ratios `report/against`,
  `report_cpu/against_cpu` (below 1: this checkout is faster);
* with `--reference DIR`: `numbers_equal`, true when every JSON file under DIR (runs' results and
  histories, aggregates, summary) equals the run's, timings, paths and group sizes aside, in every
  run of this checkout (and of the other revision).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
#: Keys whose values are timings, places, the machine or the schedule (which runs trained together), not results.
NOT_NUMBERS = frozenset({"wall_time", "total_time", "time", "time_per_iteration", "wall_time_s", "command", "run_dir",
                         "out_dir", "reused_from", "trained_together", "machine"})


def _numbers(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _numbers(v) for k, v in value.items() if k not in NOT_NUMBERS}
    if isinstance(value, list):
        return [_numbers(v) for v in value]
    return value


def _read(path: Path) -> Any:
    text = path.read_text(encoding="utf-8")
    if path.suffix == ".jsonl":
        return [json.loads(line) for line in text.splitlines() if line.strip()]
    return json.loads(text)


def differences(reference: Path, out: Path) -> list[str]:
    """The JSON files under `reference` whose numbers differ from (or are missing in) `out`."""
    bad = []
    for path in sorted(reference.rglob("*.json*")):
        if path.suffix not in (".json", ".jsonl"):
            continue
        other = out / path.relative_to(reference)
        if not other.is_file() or _numbers(_read(path)) != _numbers(_read(other)):
            bad.append(str(path.relative_to(reference)))
    return bad


def export_src(rev: str, dest: Path) -> Path:
    """`src/` of git revision `rev`, written under `dest`; returns the folder to put on PYTHONPATH."""
    archive = dest / "src.tar"
    with archive.open("wb") as fh:
        subprocess.run(["git", "-C", str(ROOT), "archive", "--format=tar", rev, "src"], stdout=fh, check=True)
    with tarfile.open(archive) as tar:  # the "data" filter where this Python has it (3.11.4+, 3.10.12+)
        tar.extractall(dest, **({"filter": "data"} if hasattr(tarfile, "data_filter") else {}))
    return dest / "src"


def run_report(src: Path, out: Path, budget: str) -> tuple[float, float]:
    """One `anode reproduce toy` from `src`; returns (its wall time, CPU time of it and its workers)."""
    env = {**os.environ, "PYTHONPATH": str(src), "MPLBACKEND": "Agg"}
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    done = subprocess.run([sys.executable, "-m", "anode", "reproduce", "toy", "--out", str(out), "--no-progress",
                           "--budget", budget], env=env, cwd=out.parent, capture_output=True, text=True)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        sys.exit(f"anode reproduce toy from {src} exited with {done.returncode}:\n{done.stderr[-2000:]}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return float(json.loads((out / "summary.json").read_text())["wall_time_s"]), cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=2, help="runs of each variant (default 2)")
    parser.add_argument("--against", metavar="REV", help="a git revision to time side by side (e.g. HEAD~1)")
    parser.add_argument("--reference", type=Path, help="a committed report folder whose numbers every run must equal")
    parser.add_argument("--budget", default="default", help="the report's budget (default: default)")
    args = parser.parse_args()
    if args.runs < 1:
        parser.error(f"--runs must be >= 1, got {args.runs}")
    if args.reference is not None and not (args.reference / "summary.json").is_file():
        parser.error(f"--reference {args.reference} holds no summary.json: give a report folder such as docs/results/toy")
    with tempfile.TemporaryDirectory() as tmp:
        variants = {"report": ROOT / "src"}
        if args.against:
            (Path(tmp) / "against").mkdir()
            variants["against"] = export_src(args.against, Path(tmp) / "against")
        times: dict[str, list[tuple[float, float]]] = {name: [] for name in variants}
        unequal: list[str] = []
        for run in range(args.runs):
            for name, src in variants.items():
                out = Path(tmp) / f"{name}-{run}"
                wall, cpu = run_report(src, out, args.budget)
                times[name].append((wall, cpu))
                line = f"run {run + 1} {name}: {wall:.1f} s wall, {cpu:.1f} s CPU"
                if args.reference is not None:
                    bad = differences(args.reference, out)
                    unequal += [f"{name}-{run}: {b}" for b in bad]
                    line += f", {len(bad)} file(s) with other numbers than {args.reference}"
                print(line, flush=True)
    wall = {name: statistics.median(w for w, _ in t) for name, t in times.items()}
    cpu = {name: statistics.median(c for _, c in t) for name, t in times.items()}
    for path in unequal[:20]:
        print(f"other numbers: {path}")
    print(f"report_seconds: {wall['report']:.1f}")
    print(f"report_cpu_seconds: {cpu['report']:.1f}")
    print(f"within_2_min: {str(all(w <= 120 for w, _ in times['report'])).lower()}")
    if args.against:
        print(f"against_seconds: {wall['against']:.1f}")
        print(f"against_cpu_seconds: {cpu['against']:.1f}")
        print(f"report/against: {wall['report'] / wall['against']:.3f}")
        print(f"report_cpu/against_cpu: {cpu['report'] / cpu['against']:.3f}")
    if args.reference is not None:
        print(f"numbers_equal: {str(not unequal).lower()}")


if __name__ == "__main__":
    main()
