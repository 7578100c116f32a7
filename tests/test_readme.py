"""The README's snippets run as written, its set-up commands match CI and carry no dated timings."""

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
    exec(compile(blocks[0], "README quickstart", "exec"), namespace)
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


SETUP_COMMANDS = (
    "pip install torch==2.13.0 -e . && anode reproduce toy --out results/toy",
    'pip install torch==2.13.0 -e ".[test]" && python -m pytest',
)
# a duration ("2 minutes", "82 s", "under 2 min", "1.5 h") or a date (2026-11-28)
TIMING = re.compile(r"\d+(\.\d+)?\s*(s|sec|seconds?|min|minutes?|h|hours?)\b|\d{4}-\d{2}-\d{2}|\bunder \d", re.I)


def _setup_block() -> str:
    blocks = re.findall(r"```bash\n(.*?)```", README, flags=re.S)
    return next(b for b in blocks if SETUP_COMMANDS[0] in b)


def test_setup_block_holds_the_two_commands_and_no_timing_or_date() -> None:
    block = _setup_block()
    commands = [line.strip() for line in block.splitlines() if line.strip() and not line.lstrip().startswith("#")]
    assert commands == list(SETUP_COMMANDS)
    assert not TIMING.search(block), f"the set-up block states a time or date: {TIMING.search(block).group(0)!r}"


def test_the_time_is_stated_once_outside_the_code_blocks() -> None:
    prose = re.sub(r"```.*?```", "", README, flags=re.S)
    statements = re.findall(r"about [\d.-]+ minutes? for the toy report", prose)
    assert len(statements) == 1, statements
    sentence = prose[prose.index(statements[0]):][:300]
    assert "2-core CPU" in sentence and "benchmarks.md" in sentence  # the machine, and where the measurements are
    assert not re.search(r"\d{4}-\d{2}-\d{2}", prose.split("## The key result")[0]), "no dated timings before the results"


def _block(marker: str) -> str:
    return next(b for b in re.findall(r"```python\n(.*?)```", README, flags=re.S) if marker in b)


def test_the_image_model_snippet_runs(capsys: pytest.CaptureFixture[str]) -> None:
    namespace: dict[str, object] = {}
    exec(compile(_block("TensorLoader(images"), "README image model", "exec"), namespace)
    shape, nfe = capsys.readouterr().out.strip().rsplit(" ", 1)
    assert shape == "torch.Size([8, 10])" and int(nfe) >= 14 and (int(nfe) - 2) % 6 == 0
    assert namespace["history"].iterations[-1]["kinetic_energy"] > 0


MNIST = ROOT.parent / "shared" / "data"


@pytest.mark.skipif(not (MNIST / "mnist").is_dir(), reason="MNIST is not in ../shared/data/mnist")
def test_the_mnist_reader_snippet_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "data").symlink_to(MNIST, target_is_directory=True)  # the snippet reads data/mnist/
    monkeypatch.chdir(tmp_path)
    namespace: dict[str, object] = {}
    exec(compile(_block("load_image_dataset"), "README MNIST reader", "exec"), namespace)
    assert "train=60000, test=10000, image_shape=(1, 28, 28)" in capsys.readouterr().out
    images, labels = next(iter(namespace["train"]))
    assert images.shape == (256, 1, 28, 28) and labels.shape == (256,) and float(images.max()) <= 1.0


def test_the_readme_stays_short() -> None:
    assert len(README.splitlines()) <= 150


def test_no_30_epoch_image_protocol_left() -> None:
    for path in [ROOT / "docs" / "images.md", *sorted((ROOT / "src" / "anode" / "lab" / "configs" / "images").glob("*.toml"))]:
        text = path.read_text(encoding="utf-8")
        assert "30 epochs" not in text and "epochs = 30" not in text, path
    assert "config_img.json" in (ROOT / "docs" / "images.md").read_text(encoding="utf-8")
