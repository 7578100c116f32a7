"""The examples run as scripts (subprocess, PYTHONPATH=src) and the README's new snippets run as written."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text(encoding="utf-8")


def _run(script: str, *args: str) -> str:
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "OMP_NUM_THREADS": "1", "MPLBACKEND": "Agg"}
    out = subprocess.run([sys.executable, str(ROOT / "examples" / script), *args], capture_output=True, text=True,
                         env=env, timeout=120, check=False)
    assert out.returncode == 0, out.stderr[-2000:]
    return out.stdout


def test_custom_field_example_learns_the_flip() -> None:
    out = _run("custom_field.py")
    values = [float(v) for v in re.findall(r"g\([-+]1\) = ([-+][\d.]+)", out)]
    assert len(values) == 2 and values[0] > 0.5 and values[1] < -0.5  # -1 -> +1 and +1 -> -1
    nfe = int(re.search(r"NFE of the block (\d+)", out).group(1))  # type: ignore[union-attr]
    assert nfe >= 14 and (nfe - 2) % 6 == 0  # counted inside a user's nn.Module


def test_trajectories_example_writes_the_flow_figure(tmp_path: Path) -> None:
    out = _run("trajectories.py", str(tmp_path))
    assert "trajectory (20, 60, 3); starts at [x, 0]: True" in out
    png = tmp_path / "flow.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000


def test_image_example_trains_with_regulariser_and_own_optimizer() -> None:
    out = _run("image_regularised.py")
    match = re.search(r"loss ([\d.]+), accuracy ([\d.]+), kinetic energy ([\d.]+), jacobian norm ([\d.]+), NFE (\d+)", out)
    assert match is not None, out
    loss, accuracy, kinetic, jacobian = (float(v) for v in match.groups()[:4])
    assert accuracy > 0.6 and kinetic > 0 and jacobian > 0 and loss < 0.693  # better than chance


def test_cnf_mnist_gpu_example_runs_its_smoke_mode(tmp_path: Path) -> None:
    out = _run("cnf_mnist_gpu.py", "--out", str(tmp_path), "--smoke")
    rows = re.findall(r"^(.+?): field parameters [\d,]+, test ([\d.]+) bits/dim.*mean NFE forward ([\d.]+), backward ([\d.]+)$",
                      out, flags=re.M)
    assert [r[0] for r in rows] == ["CNF", "ACNF p=16, q=N(0,I)", "ACNF p=16, learned q"], out
    assert all(float(bits) > 0 and float(fwd) > 0 and float(bwd) > 0 for _, bits, fwd, bwd in rows)
    assert len(list(tmp_path.glob("*/history.jsonl"))) == 3


def test_readme_custom_field_and_regulariser_snippets_run(capsys: pytest.CaptureFixture[str]) -> None:
    blocks = re.findall(r"```python\n(.*?)```", README, flags=re.S)
    snippets = [b for b in blocks if "odefunc=" in b or "kinetic_energy" in b]
    assert len(snippets) >= 2, "README lacks the custom-field / regulariser snippets"
    for snippet in snippets:
        exec(compile(snippet, "README snippet", "exec"), {})
    assert capsys.readouterr().out.strip()
