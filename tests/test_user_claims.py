"""Claims in a user's own experiment file: validated at load time like every other key, judged by the one
evaluator, shown in the experiment's report with each part's verdict."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from anode.lab.claims import HOLDS, INCONCLUSIVE, NOT_HOLD, VERDICTS
from anode.lab.cli import main
from anode.lab.docgen import CLAIM_EXAMPLE
from anode.lab.experiments.config import load_config, parse_config
from anode.lab.experiments.schema import ConfigError

ROOT = Path(__file__).resolve().parents[1]


def _config(tmp_path: Path, text: str = CLAIM_EXAMPLE) -> Path:
    path = tmp_path / "mine.toml"
    path.write_text(text)
    return path


def test_the_documented_example_is_the_one_in_docs_config_md() -> None:
    assert CLAIM_EXAMPLE.strip() in (ROOT / "docs" / "config.md").read_text(encoding="utf-8")


def test_a_user_experiment_with_a_claim_gets_verdicts(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "out"
    status = main(["experiment", str(_config(tmp_path)), "--out", str(out), "--no-progress", "--no-figures"])
    assert status == 0, capsys.readouterr().err
    summary = json.loads((out / "summary.json").read_text())
    [claim] = summary["claims"]
    assert claim["claim"] == "ANODE needs fewer function evaluations than NODE."
    decided = (HOLDS, NOT_HOLD, INCONCLUSIVE)  # 3 repeats a side: a verdict, never "too few" or "not run"
    assert claim["verdict"] in decided and [p["verdict"] for p in claim["parts"]] and \
        all(p["verdict"] in decided and "p = " in p["detail"] for p in claim["parts"])
    report = (out / "report.md").read_text()
    assert "No claims are declared" not in report
    assert re.search(r"\| ANODE needs fewer function evaluations than NODE\. \| .*ANODE .* vs NODE .* \| "
                     rf"({'|'.join(VERDICTS)})", report)
    assert "↳ part 1 of 2" in report and "↳ part 2 of 2" in report
    # `anode compare` reads an experiment's report too
    assert main(["compare", str(out), str(out)]) == 0


@pytest.mark.parametrize(("change", "message"), [
    (('role = "augmented" }, worse', 'role = "reference" }, worse'),
     r"claim 'ANODE needs .*: experiment 'my_spheres' has no model with role reference"),
    (('metric = "final_loss"', 'metric = "iterations_to_level"'), r"metric 'iterations_to_level' is computed by the reproductions only"),
    (('metric = "final_loss"', 'metric = "accuracy"'), r"unknown metric 'accuracy'; valid choices"),
    (('claim = "ANODE', 'experiment = "other"\nclaim = "ANODE'), r"experiment = 'other', but a claim in an experiment file belongs"),
    (('tests = [', 'datasets = ["spheres 3d"]\ntests = ['), r"unknown key|datasets"),
])
def test_a_bad_claim_is_an_error_at_load_time(tmp_path: Path, change: tuple[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_config(_config(tmp_path, CLAIM_EXAMPLE.replace(*change, 1)))


def test_a_claim_on_a_missing_dataset_names_it(tmp_path: Path) -> None:
    text = CLAIM_EXAMPLE.replace('{ metric = "final_loss",', '{ metric = "final_loss", datasets = ["spheres 3d"],', 1)
    with pytest.raises(ConfigError, match=r"has no dataset 'spheres 3d'; datasets: \['spheres 2d'\]"):
        load_config(_config(tmp_path, text))


def test_claims_are_optional_and_plain_data() -> None:
    import tomllib

    data = tomllib.loads(CLAIM_EXAMPLE)
    without = parse_config({k: v for k, v in data.items() if k != "claims"})
    assert without.claims == ()
    assert parse_config(data).to_dict()["claims"][0]["tests"][0]["metric"] == "mean_nfe_forward"
