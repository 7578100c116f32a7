"""`anode reproduce cnf`: the smoke budget through the CLI, the claims file, budgets, matched fields, fit_density."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

import anode
from anode import training
from anode.data import make_density
from anode.lab.claims import check_claims, load_claims
from anode.lab.cli.commands import CNF_BUDGETS, main
from anode.lab.experiments.config import select_model
from anode.lab.experiments.schema import ConfigError
from anode.lab.reproduce.cnf import aggregate_cnf, build_density_model, field_width, load_cnf_suite
from anode.lab.reproduce.toy import builtin_config
from anode.training import DENSITY_FIELDS, fit_density


def test_smoke_budget_through_the_cli_writes_a_report_with_a_claim_table(tmp_path: Path) -> None:
    out = tmp_path / "cnf"
    assert main(["reproduce", "cnf", "--budget", "smoke", "--out", str(out), "--jobs", "1", "--no-progress"]) == 0
    report = (out / "report.md").read_text(encoding="utf-8")
    assert "## Claims (7 too few repeats)" in report
    assert "| paper claim | what we measured | criterion | holds? |" in report
    assert "field params" in report and "![" in report
    summary = json.loads((out / "summary.json").read_text(encoding="utf-8"))
    assert len(summary["claims"]) == 7 and summary["budget"] == "smoke"
    groups = summary["aggregates"]["cnf"]["groups"]
    assert len(groups) == 12 and all(g["completed"] == 1 and g["failed"] == 0 for g in groups)
    run = out / "runs" / "two-moons" / "cnf" / "seed-0"
    lines = (run / "history.jsonl").read_text(encoding="utf-8").splitlines()
    assert len(lines) == 3 and set(json.loads(lines[0])) == set(DENSITY_FIELDS)
    assert (run / "artifacts.json").exists() and (out / "figures" / "density__two-moons.png").exists()
    # rerunning reuses every finished run
    before = (run / "result.json").read_text(encoding="utf-8")
    assert main(["reproduce", "cnf", "--budget", "smoke", "--out", str(out), "--jobs", "1", "--no-progress"]) == 0
    assert (run / "result.json").read_text(encoding="utf-8") == before


def test_the_claims_file_parses_and_every_claim_finds_its_models() -> None:
    claims = load_claims(builtin_config("cnf/claims"))
    experiment, _ = load_cnf_suite("default")
    check_claims(claims, {experiment.name: experiment})
    for claim in claims:
        for test in claim.tests:
            for side in test.sides:
                assert select_model(side, experiment) is not None  # type: ignore[arg-type]


def test_bad_budget_names_list_the_valid_ones(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(ConfigError, match=r"unknown budget 'huge'; valid choices: \['default', 'full', 'smoke'\]"):
        load_cnf_suite("huge")
    with pytest.raises(SystemExit) as exit_info:
        main(["reproduce", "cnf", "--budget", "huge", "--out", "x"])
    assert exit_info.value.code == 2
    assert "invalid choice: 'huge' (choose from smoke, default, full)" in capsys.readouterr().err.replace("'smoke', 'default', 'full'",
                                                                                                         "smoke, default, full")
    assert set(CNF_BUDGETS) == {"smoke", "default", "full"}


def test_budgets_apply_and_fields_are_matched_in_parameter_count() -> None:
    default, _ = load_cnf_suite("default")
    full, _ = load_cnf_suite("full")
    assert default.repeats >= 3 and full.repeats > default.repeats and full.train.iterations > default.train.iterations
    cnf = build_density_model(default, default.model("CNF"), seed=0)
    target = sum(p.numel() for p in cnf.odefunc.parameters())
    for model in default.models:
        built = build_density_model(default, model, seed=0)
        field = built.odefunc if isinstance(built, anode.CNF) else built.cnf.odefunc
        count = sum(p.numel() for p in field.parameters())
        assert abs(count - target) <= 0.05 * target, (model.name, field_width(default, model), count, target)


def test_aggregate_of_an_empty_folder_reads_not_run(tmp_path: Path) -> None:
    experiment, _ = load_cnf_suite("smoke")
    agg = aggregate_cnf(experiment, tmp_path)
    assert agg["runs_finished"] == 0 and all(g["mean_nfe_forward"]["n"] == 0 for g in agg["groups"])


def _small_cnf() -> anode.CNF:
    with anode.seeded(0):
        return anode.CNF(anode.ODEFunc(2, 8, time_dependent=True, non_linearity="tanh"), dim=2,
                         solver=anode.SolverConfig(rtol=1e-3, atol=1e-3))


def test_fit_density_records_every_iteration_and_is_deterministic() -> None:
    data = make_density("two_moons", 64, seed=0)
    first = fit_density(_small_cnf(), data, iterations=3, batch_size=32, lr=1e-2, seed=0)
    second = fit_density(_small_cnf(), data, iterations=3, batch_size=32, lr=1e-2, seed=0)
    assert [r["iteration"] for r in first] == [0, 1, 2] and all(set(r) == set(DENSITY_FIELDS) for r in first)
    assert [r["loss"] for r in first] == [r["loss"] for r in second]
    assert all(r["nfe_forward"] > 0 and r["nfe_backward"] == 0 and r["regularisation"] == 0 for r in first)
    regularised = fit_density(_small_cnf(), data, iterations=2, batch_size=32, lr=1e-2, seed=0, kinetic_energy=0.1, jacobian_norm=0.1)
    assert all(r["regularisation"] > 0 for r in regularised)


def test_fit_density_errors_name_the_value_and_the_fix() -> None:
    data = make_density("two_moons", 16, seed=0)
    with pytest.raises(ValueError, match=r"batch_size 32 is larger than the data \(16 points\); use batch_size <= 16"):
        fit_density(_small_cnf(), data, iterations=1, batch_size=32, lr=1e-2, seed=0)
    with pytest.raises(ValueError, match="lr must be a finite number > 0, got 0"):
        fit_density(_small_cnf(), data, iterations=1, batch_size=8, lr=0, seed=0)
    with pytest.raises(TypeError, match="model must be an anode.CNF or anode.AugmentedCNF, got Linear"):
        fit_density(torch.nn.Linear(2, 2), data, iterations=1, batch_size=8, lr=1e-2, seed=0)  # type: ignore[arg-type]


def test_test_log_likelihood_is_the_cnf_log_prob_and_the_augmented_iw_bound() -> None:
    x = make_density("two_moons", 20, seed=1)
    cnf = _small_cnf()
    with torch.no_grad():
        expected = cnf.log_prob(x)
    got = training.test_log_likelihood(cnf, x, k=4, generator=torch.Generator().manual_seed(0), batch_size=7)
    torch.testing.assert_close(got, expected)
    with anode.seeded(0):
        augmented = anode.AugmentedCNF(anode.ODEFunc(2, 8, augment_dim=1, time_dependent=True), data_dim=2, augment_dim=1,
                                       solver=anode.SolverConfig(rtol=1e-3, atol=1e-3))
    with torch.no_grad():
        bound = augmented.iw_bound(x, k=4, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(training.test_log_likelihood(augmented, x, k=4, generator=torch.Generator().manual_seed(0)), bound)
