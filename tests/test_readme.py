"""The README's quickstart runs as written and its set-up commands match CI."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text(encoding="utf-8")


def test_quickstart_runs_as_written(capsys: pytest.CaptureFixture[str]) -> None:
    blocks = re.findall(r"```python\n(.*?)```", README, flags=re.S)
    assert blocks, "README has no python quickstart block"
    namespace: dict[str, object] = {}
    exec(compile(blocks[0], "README quickstart", "exec"), namespace)  # noqa: S102 - our own README
    out = capsys.readouterr().out.splitlines()
    assert out[-1] == "84816"
    forward, backward = map(int, out[0].split())
    assert forward >= 14 and (forward - 2) % 6 == 0 and backward == 0  # dopri5 pattern, no adjoint
    assert namespace["prediction"].shape == (5, 1)


def test_ci_runs_the_readme_test_command() -> None:
    test_cmd = next(line for line in README.splitlines() if "pytest" in line and line.startswith("pip install"))
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    install, run = (part.strip() for part in test_cmd.split("&&"))
    assert install.replace("pip install", "python -m pip install") in ci or install in ci
    assert run in ci


TOY_TIME = "under 2 minutes on 2 CPU cores (82 to 113 s in thirteen runs on 2026-11-28 as the machine's speed varied, beyond-the-paper section included; side by side, 0.86 to 0.91 of the time of the code before)"


@pytest.mark.parametrize("path", ["README.md", "src/anode/configs/toy/suite.toml", "src/anode/reproduce.py"])
def test_one_figure_for_the_toy_report_time(path: str) -> None:
    text = (ROOT / path).read_text(encoding="utf-8")
    assert TOY_TIME in text, f"{path} must state the toy report's time as {TOY_TIME!r}"
    assert "about 15 minutes" not in text


def test_no_30_epoch_image_protocol_left() -> None:
    for path in [ROOT / "docs" / "images.md", *sorted((ROOT / "src" / "anode" / "configs" / "images").glob("*.toml"))]:
        text = path.read_text(encoding="utf-8")
        assert "30 epochs" not in text and "epochs = 30" not in text, path
    assert "config_img.json" in (ROOT / "docs" / "images.md").read_text(encoding="utf-8")


def test_the_stacked_training_example_runs_as_written(capsys: pytest.CaptureFixture[str]) -> None:
    block = next(b for b in re.findall(r"```python\n(.*?)```", README, flags=re.S) if "EnsembleTrainer" in b)
    namespace: dict[str, object] = {}
    exec(compile(block, "README stacked training", "exec"), namespace)  # noqa: S102 - our own README
    nfe = eval(capsys.readouterr().out.splitlines()[-1])  # noqa: S307 - a list of numbers we printed
    assert len(nfe) == 4 and all(n >= 14 for n in nfe)
    assert all(len(h.iterations) == 2 * 10 for h in namespace["histories"])  # 600 points / 64 -> 10 batches
