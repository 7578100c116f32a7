"""The documentation: every Python block of the tutorials runs as written, and the site builds.

Each tutorial page's ```python blocks run in order in one namespace per page, in a temporary working
directory, and a per-page check asserts what the page claims. A block is fenced out of the test by
a marker on the line right before its fence:

* ``<!-- skip-test -->``: never run (needs a GPU, a cluster, torchrun, or is only illustrative);
* ``<!-- needs: mnist -->``: run only when MNIST is in ``../shared/data/mnist`` (the test links that
  folder as ``data/`` in the working directory), skipped otherwise.

The site build (``mkdocs build --strict``) is skipped when MkDocs is not installed.
"""

from __future__ import annotations

import importlib
import importlib.util
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
SHARED_DATA = ROOT.parent / "shared" / "data"
HAS_MNIST = (SHARED_DATA / "mnist").is_dir()
SKIP, NEEDS_MNIST = "<!-- skip-test -->", "<!-- needs: mnist -->"
FENCE = re.compile(r"^```python[^\n]*\n(.*?)^```", re.S | re.M)


def tutorial_pages() -> list[str]:
    """The pages under "Tutorials" in mkdocs.yml's nav, and the quickstart (paths relative to docs/)."""
    nav = (ROOT / "mkdocs.yml").read_text(encoding="utf-8")
    section = nav[nav.index("  - Tutorials:"):nav.index("  - Results:")]
    return ["quickstart.md", *re.findall(r":\s*([\w/.-]+\.md)\s*$", section, flags=re.M)]


def python_blocks(text: str) -> list[tuple[str, str | None]]:
    """``(code, marker)`` for each ```python block, marker being the comment on the line before the fence."""
    blocks = []
    for match in FENCE.finditer(text):
        before = text[:match.start()].rstrip("\n").rsplit("\n", 1)[-1].strip()
        blocks.append((match.group(1), before if before in (SKIP, NEEDS_MNIST) else None))
    return blocks


def _dopri5(n: int) -> bool:
    return n >= 8 and (n - 2) % 6 == 0


def check_quickstart(ns: dict[str, Any], out: str) -> None:
    assert out.splitlines()[-1] == "84816"
    forward, backward = map(int, out.splitlines()[0].split())
    assert _dopri5(forward) and backward == 0
    assert ns["prediction"].shape == (5, 1)


def check_custom_field(ns: dict[str, Any], out: str) -> None:
    assert ns["prediction"].shape == (5, 1) and _dopri5(ns["model"].nfe.forward)
    assert ns["trajectory"].shape == (11, 5, 3)
    assert torch.equal(ns["trajectory"][0, :, :2], ns["x"]) and not ns["trajectory"][0, :, 2].any()  # h(0) = [x, 0]
    nfe = ns["history"].array("nfe_forward")
    assert len(nfe) == 2 * 2 and all(_dopri5(int(n)) for n in nfe)  # 64 points / 32 -> 2 iterations an epoch
    assert torch.allclose(ns["solution"][-1], torch.full((3,), torch.e ** -1), atol=1e-3)
    assert ns["nfe"].forward == 14


def check_augmentation(ns: dict[str, Any], out: str) -> None:
    assert out.count("(4, 4)") == 4
    assert torch.equal(ns["node_out"], ns["direct"])  # p = 0 is a NODE, bit for bit
    counts = [int(v) for v in out.splitlines()[6].split()]
    assert counts[0] < counts[1]  # augmentation adds parameters
    record = ns["record"]
    assert record["kinetic_energy"] > 0 and record["jacobian_norm"] > 0
    assert record["regularisation"] == pytest.approx(0.01 * record["kinetic_energy"] + 0.01 * record["jacobian_norm"], rel=1e-5)
    assert ns["states"].shape == (2, 4, 2)
    assert {k: tuple(v.shape) for k, v in ns["integrals"].items()} == {"kinetic_energy": (4,), "jacobian_norm": (4,)}


def check_images(ns: dict[str, Any], out: str) -> None:
    assert anode_count(ns["node"]) == 84395 and anode_count(ns["anode_p5"]) == 84816  # Table 1's matched pair
    assert ns["features"].shape == (4, 6, 28, 28) and ns["logits"].shape == (4, 10)
    assert len(ns["history"].iterations) == 2 and set(ns["metrics"]) >= {"loss", "accuracy", "nfe_forward"}
    if HAS_MNIST:
        assert ns["mnist"].train_images.shape == (60000, 1, 28, 28) and ns["mnist"].num_classes == 10
        assert 0 <= ns["mnist_metrics"]["accuracy"] <= 1 and _dopri5(int(ns["mnist_metrics"]["nfe_forward"]))


def anode_count(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def check_reproducing(ns: dict[str, Any], out: str) -> None:
    assert ns["test"].p == pytest.approx(0.0056, abs=1e-4)  # the p-value the results page states (0.006)
    groups = {g["model"]: g for g in ns["aggregate"]["groups"]}
    assert set(groups) == {"NODE", "ANODE (p=1)"} and all(g["completed"] == 2 for g in groups.values())
    assert (Path("runs") / "g1d-smoke" / "aggregate.json").is_file()  # written in the working directory
    run = ns["run"]  # load_run rebuilt the stacked ANODE run: it predicts as the trained model did
    assert type(run.model).__name__ == "ODEFlow" and run.model.odeblock.augment_dim == 1 and not run.model.training
    assert ns["prediction"].shape == (5, 1) and run.train_config.epochs == 2 and len(run.history.iterations) == 2


def check_ensemble(ns: dict[str, Any], out: str) -> None:
    histories = ns["histories"]
    assert len(histories) == 4 and all(len(h.iterations) == 2 * 3 for h in histories)  # 192 points / 64
    assert all(h.epochs[-1]["nfe_forward"] >= 14 for h in histories)
    assert "True True" in out  # a stacked run's first iteration is bitwise the run alone
    assert ns["trainer_support"](ns["trainers"][0]) is None and "adjoint" in ns["trainer_support"](ns["adjoint"])


def check_solvers(ns: dict[str, Any], out: str) -> None:
    assert torch.equal(ns["outputs"]["torchdiffeq"], ns["outputs"]["anode"])
    assert ns["counts"]["torchdiffeq"] == ns["counts"]["anode"]
    forward, accepted, rejected = ns["counts"]["anode"]
    assert forward == 2 + 6 * (accepted + rejected)  # dopri5: 2 + 6k
    assert ns["model"].nfe.backward == 0  # backprop through the solver calls no field
    adjoint = ns["adjoint"].nfe
    assert adjoint.backward > 0 and adjoint.backward == 2 + 6 * (adjoint.backward_accepted_steps + adjoint.backward_rejected_steps)
    assert ns["rk4"].nfe.forward == 4 * ns["rk4"].nfe.accepted_steps == 40
    assert isinstance(ns["failure"], ns["anode"].MaxStepsExceeded)
    counts = ns["per_sample"].per_sample  # the stiff sample does not cost the easy ones
    assert counts[0] == counts[1] < counts[2] == ns["per_sample"].forward and counts[0] < ns["batch"].forward
    # a failing sample is skipped (the default): NaN, recorded; the other one solved (y = 1 / (1 + t))
    assert [i for i, _ in ns["skipped"].failed_samples] == [0] and bool(torch.isnan(ns["ends"][0]).all())
    assert abs(float(ns["ends"][1, 0]) - 1 / 3) < 1e-2


def check_cnf(ns: dict[str, Any], out: str) -> None:
    lines = out.splitlines()
    assert lines[-2].startswith("CNF: NFE first") and lines[-1].startswith("augmented CNF (p=1): NFE first")
    assert len(ns["cnf_nfe"]) == len(ns["augmented_nfe"]) == 20
    assert all(_dopri5(n) for n in ns["cnf_nfe"] + ns["augmented_nfe"])
    assert -10 < ns["cnf_test"] < 0 and -10 < ns["bound"] < 0
    assert ns["samples"].shape == (512, 2) and bool(torch.isfinite(ns["samples"]).all())


CHECKS: dict[str, Callable[[dict[str, Any], str], None]] = {
    "quickstart.md": check_quickstart,
    "tutorials/custom-field.md": check_custom_field,
    "tutorials/augmentation-regularisers.md": check_augmentation,
    "tutorials/images.md": check_images,
    "tutorials/reproducing.md": check_reproducing,
    "tutorials/ensemble.md": check_ensemble,
    "tutorials/solvers.md": check_solvers,
    "tutorials/cnf.md": check_cnf,
}


def test_every_tutorial_with_python_has_a_check() -> None:
    pages = tutorial_pages()
    assert "tutorials/custom-field.md" in pages and "scale.md" in pages
    for page in pages:
        runnable = [code for code, marker in python_blocks((DOCS / page).read_text(encoding="utf-8")) if marker != SKIP]
        assert not runnable or page in CHECKS, f"{page} has Python blocks but no check in tests/test_docs.py"
    assert set(CHECKS) <= set(pages)


@pytest.mark.parametrize("page", sorted(CHECKS))
def test_tutorial_code_runs(page: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                            capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MPLBACKEND", "Agg")
    if HAS_MNIST:
        (tmp_path / "data").symlink_to(SHARED_DATA, target_is_directory=True)
    namespace: dict[str, Any] = {"__name__": f"docs_{Path(page).stem.replace('-', '_')}"}
    blocks = python_blocks((DOCS / page).read_text(encoding="utf-8"))
    assert blocks, f"{page} has no python block"
    for i, (code, marker) in enumerate(blocks):
        if marker == SKIP or (marker == NEEDS_MNIST and not HAS_MNIST):
            continue
        exec(compile(code, f"{page} block {i + 1}", "exec"), namespace)
    CHECKS[page](namespace, capsys.readouterr().out)


def test_markers_are_honoured() -> None:
    text = "a\n<!-- skip-test -->\n```python\nraise SystemExit\n```\n\n```python title=\"x.py\"\nx = 1\n```\n"
    assert python_blocks(text) == [("raise SystemExit\n", SKIP), ("x = 1\n", None)]


needs_mkdocs = pytest.mark.skipif(importlib.util.find_spec("mkdocs") is None or importlib.util.find_spec("mkdocstrings") is None,
                                  reason="mkdocs and mkdocstrings[python] are not installed (pip install the docs packages)")


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("site")
    build = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(out)],
                           cwd=ROOT, capture_output=True, text=True, timeout=300, check=False,
                           env={**__import__("os").environ, "NO_MKDOCS_2_WARNING": "1"})
    assert build.returncode == 0, build.stderr[-4000:]
    assert "WARNING" not in build.stderr, build.stderr[-4000:]
    return out


@needs_mkdocs
def test_the_site_builds_strict_with_every_page(site: Path) -> None:
    for page in ["index.html", "install/index.html", "quickstart/index.html", "benchmarks/index.html",
                 "config/index.html", "changelog/index.html", "results/index.html", "results/toy/report/index.html",
                 *(f"{p[:-3]}/index.html" for p in tutorial_pages() if p != "quickstart.md")]:
        assert (site / page).is_file(), page
    assert "0.2.0" in (site / "changelog" / "index.html").read_text(encoding="utf-8")
    assert not list(site.glob("results/**/report.html"))


API_PAGES = {
    "anode.models": "api/models", "anode.data": "api/data", "anode.ensemble": "api/ensemble",
    "anode.plotting": "api/plotting", "anode.training": "api/training", "anode.solvers": "api/solvers",
    "anode.solve": "api/solvers", "anode.config": "api/solvers", "anode.regularisers": "api/utilities",
    "anode.lab.experiments": "api/lab-experiments", "anode.lab.cli": "api/lab-cli",
}


@needs_mkdocs
@pytest.mark.parametrize("module", sorted(API_PAGES))
def test_every_public_name_has_an_api_entry(site: Path, module: str) -> None:
    html = (site / API_PAGES[module] / "index.html").read_text(encoding="utf-8")
    names = getattr(importlib.import_module(module), "__all__", None)
    assert names, f"{module} has no __all__"
    missing = [name for name in names if f'id="{module}.{name}"' not in html]
    assert not missing, f"{module}: no entry for {missing} on {API_PAGES[module]}"


@needs_mkdocs
def test_the_top_level_page_lists_every_public_name(site: Path) -> None:
    import anode

    html = (site / "api" / "index.html").read_text(encoding="utf-8")
    assert not [name for name in anode.__all__ if f"<code>{name}</code>" not in html and name != "__version__"]
