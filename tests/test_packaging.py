"""Packaging: the built-in configs are package data, so a wheel carries them (the install from that
wheel, run outside the tree, is exercised by `.ci/run`)."""

from __future__ import annotations

import importlib.util
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = ROOT / "src" / "anode" / "lab" / "configs"


def _build_wheel(dest: Path) -> Path:
    """Build a wheel from a copy of the project in `dest` (so the work tree gets no build/ folder).

    Returns:
        The wheel's path.
    """
    if importlib.util.find_spec("setuptools") is None or importlib.util.find_spec("pip") is None:
        pytest.skip("building a wheel needs pip and setuptools in this environment (--no-build-isolation)")
    src = dest / "project"
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, src / name)
    shutil.copytree(ROOT / "src", src / "src", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    done = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-w", str(dest / "dist"), str(src)],
        capture_output=True, text=True, timeout=300, check=False,
    )
    assert done.returncode == 0, f"pip wheel failed:\n{done.stdout}\n{done.stderr}"
    (wheel,) = (dest / "dist").glob("anode-*.whl")
    return wheel


def test_builtin_configs_are_in_the_wheel(tmp_path: Path) -> None:
    expected = {f"anode/lab/configs/{p.relative_to(CONFIGS).as_posix()}" for p in CONFIGS.rglob("*.toml")}
    assert {"anode/lab/configs/toy/suite.toml", "anode/lab/configs/images/suite.toml", "anode/lab/configs/toy/spheres.toml",
            "anode/lab/configs/images/mnist.toml"} <= expected
    with zipfile.ZipFile(_build_wheel(tmp_path)) as whl:
        names = set(whl.namelist())
    missing = sorted(expected - names)
    assert not missing, f"built-in configs missing from the wheel (add them to [tool.setuptools.package-data]): {missing}"
    assert "anode/py.typed" in names and "anode/lab/cli/commands.py" in names


def test_builtin_configs_are_read_through_importlib_resources() -> None:
    """`builtin_config` finds configs relative to the installed package, not the source tree."""
    from anode.lab.reproduce.toy import builtin_config

    path = builtin_config("toy/suite")
    assert path.is_file() and path.parent.parent.name == "configs"
    with pytest.raises(FileNotFoundError, match=r"no built-in config 'toy/nope'; built-in configs: \[.*'toy/spheres'"):
        builtin_config("toy/nope")
