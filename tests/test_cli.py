"""Tests of the `anode` command line (anode.lab.cli.commands): version/help, errors with exit code 2, experiment,
plot and `reproduce toy`."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import pytest

import anode
import anode.lab.experiments.runner as runner_mod
import anode.lab.reproduce.toy as reproduce_mod
from anode.history import read_json
from anode.lab.claims import NOT_RUN, TOO_FEW, VERDICTS
from anode.lab.cli import main
from anode.lab.experiments import parse_config

pytestmark = pytest.mark.usefixtures("single_thread")



TINY_TOML = """
name = "tiny"
repeats = 2

[train]
epochs = 1
batch_size = 32
max_iterations = 3

[[datasets]]
kind = "spheres"
name = "spheres 2d"
dim = 2
num_points_inner = 30
num_points_outer = 60

[[models]]
name = "NODE"
kind = "odenet"
hidden_dim = 8

[[models]]
name = "ANODE (p=1)"
kind = "odenet"
hidden_dim = 8
augment_dim = 1

[artifacts]
trajectories = 5
timesteps = 4
input_map = 6
"""




# ----------------------------------------------------------------------------- version, help, usage errors


def test_version(capsys):
    with pytest.raises(SystemExit) as info:
        main(["--version"])
    assert info.value.code == 0
    assert capsys.readouterr().out.strip() == f"anode {anode.__version__}"


def test_help(capsys):
    with pytest.raises(SystemExit) as info:
        main(["--help"])
    assert info.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: anode") and all(cmd in out for cmd in ("experiment", "plot", "reproduce"))


def help_text(capsys, argv: list[str]) -> str:
    with pytest.raises(SystemExit) as info:
        main([*argv, "--help"])
    assert info.value.code == 0
    return " ".join(capsys.readouterr().out.split())  # argparse wraps lines: compare with single spaces


def test_reproduce_help_names_the_three_suites(capsys):
    out = help_text(capsys, ["reproduce"])
    assert "{toy,images,cnf}" in out and "--budget" not in out


def test_reproduce_toy_help_has_only_toy_options_with_defaults(capsys):
    out = help_text(capsys, ["reproduce", "toy"])
    for option in ("--out", "--budget {smoke,default,full}", "--full", "--jobs", "--gif", "--fresh", "--retry-failed",
                   "--no-progress"):
        assert option in out, option
    assert "(default: default)" in out and "(default: the number of CPU cores)" in out
    for image_only in ("--dataset", "--sweep-p", "--epochs", "--report-only", "--device"):
        assert image_only not in out, image_only


def test_reproduce_images_help_has_only_image_options_with_defaults(capsys):
    out = help_text(capsys, ["reproduce", "images"])
    for option in ("--dataset {mnist,idx,cifar10,svhn,tinyimagenet}", "--data-dir", "--budget {smoke,small,paper}", "--full",
                   "--device", "--sweep-p", "--weight-decay", "--repeats", "--epochs", "--jobs", "--report-only", "--fresh",
                   "--retry-failed", "--no-progress"):
        assert option in out, option
    assert "(default: small)" in out and "(default: 1)" in out
    assert "--gif" not in out


def test_experiment_help_has_fresh_and_retry(capsys):
    out = help_text(capsys, ["experiment"])
    assert "--fresh" in out and "--retry-failed" in out and "(default: 1)" in out


def test_cli_choices_match_the_library():
    import anode.lab.cli.commands as cli
    import anode.lab.reproduce.images as ri

    for kind, choices in (("toy", cli.TOY_BUDGETS), ("images", cli.IMAGE_BUDGETS)):
        _, _, _ = reproduce_mod.read_budget(kind, choices[0])
        suite = reproduce_mod.tomllib.loads(reproduce_mod.builtin_config(f"{kind}/suite").read_text())
        assert sorted(choices) == sorted(suite["budgets"]), kind
    assert cli.IMAGE_DATASETS == ri._DATASETS


@pytest.mark.parametrize("argv", [["experiment"], ["reproduce", "toy"], ["reproduce", "images"], ["table1"], ["train"],
                                  ["plot"]])
def test_help_states_each_default_once(capsys, argv):
    out = help_text(capsys, argv)
    assert not re.search(r"\(default:? [^)]*\) \(default", out), out
    assert "(default" in out


@pytest.mark.parametrize("argv", [["reproduce", "images", "--dataset", "mnist"], ["table1", "--dataset", "mnist", "--minutes", "1"]])
def test_a_missing_data_folder_names_the_flag(capsys, monkeypatch, tmp_path, argv):
    monkeypatch.delenv("ANODE_DATA_DIR", raising=False)
    with pytest.raises(SystemExit) as info:
        main([*argv, "--out" if argv[0] == "reproduce" else "--results", str(tmp_path / "out")])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert "pass --data-dir DIR" in err and "ANODE_DATA_DIR" in err and "data_dir=" not in err
    assert not (tmp_path / "out").exists()  # refused before any work


def test_missing_command_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as info:
        main([])
    assert info.value.code == 2
    assert "required" in capsys.readouterr().err


# ----------------------------------------------------------------------------- experiment errors


def test_experiment_missing_config_file(tmp_path, capsys):
    path = tmp_path / "nope.toml"
    assert main(["experiment", str(path), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("anode: error:") and str(path) in err
    assert not (tmp_path / "out").exists()


def test_experiment_config_with_unknown_key(tmp_path, capsys):
    path = tmp_path / "exp.toml"
    path.write_text(TINY_TOML.replace("max_iterations = 3", "max_iters = 3"))
    assert main(["experiment", str(path), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert "unknown key exp.toml.train.max_iters" in err and "'max_iterations'" in err
    assert not (tmp_path / "out").exists()


def test_experiment_config_with_bad_value(tmp_path, capsys):
    path = tmp_path / "exp.toml"
    path.write_text(TINY_TOML.replace('kind = "odenet"', 'kind = "odenet2"', 1))
    assert main(["experiment", str(path), "--out", str(tmp_path / "out")]) == 2
    assert "unknown model kind 'odenet2'" in capsys.readouterr().err


def test_experiment_unknown_builtin_lists_the_builtins(tmp_path, capsys):
    assert main(["experiment", "toy/NOPE", "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert "no built-in config 'toy/NOPE'" in err
    for name in ("toy/spheres", "toy/flow_g1d", "images/mnist"):
        assert f"'{name}'" in err
    assert "suite" not in err


def test_experiment_bad_budget_override(tmp_path, capsys):
    path = tmp_path / "exp.toml"
    path.write_text(TINY_TOML)
    assert main(["experiment", str(path), "--out", str(tmp_path / "out"), "--epochs", "0"]) == 2
    assert "epochs must be >= 1" in capsys.readouterr().err


# ----------------------------------------------------------------------------- experiment + plot


def test_experiment_then_plot_redraws_without_retraining(tmp_path, capsys, monkeypatch):
    cfg_path, out = tmp_path / "exp.toml", tmp_path / "out"
    cfg_path.write_text(TINY_TOML)
    code = main(["experiment", str(cfg_path), "--out", str(out), "--no-progress", "--repeats", "1",
                 "--max-iterations", "2"])
    assert code == 0
    printed = capsys.readouterr().out.strip().splitlines()[-1]
    assert printed.startswith(f"results in {out}: report.html, report.md, aggregate.json, experiment.json, runs/, figures/ (")
    md = (out / "report.md").read_text()
    assert "No claims are declared for this experiment." in md and "| paper claim |" not in md
    assert f"exp.toml --out {out} --no-progress --repeats 1 --max-iterations 2" in md
    assert ("Runs finished: 2, of which 0 failed." in md and "## Figures" in md
            and "![loss / spheres-2d](figures/loss__spheres-2d.png)" in md)
    assert "data:image/png;base64," in (out / "report.html").read_text()
    # the overrides reached the runs
    assert sorted(p.name for p in (out / "runs" / "spheres-2d" / "node").glob("seed-*")) == ["seed-0"]
    assert read_json(out / "runs" / "spheres-2d" / "node" / "seed-0" / "result.json")["iterations"] == 2
    assert read_json(out / "experiment.json")["repeats"] == 1
    first = {p.name: p.stat().st_mtime_ns for p in (out / "figures").glob("*.png")}
    assert {"loss__spheres-2d.png", "nfe__spheres-2d.png", "map__spheres-2d__node.png"} <= set(first)

    results = sorted(out.glob("runs/*/*/seed-*/result.json"))
    stamps = {p: p.stat().st_mtime_ns for p in results}
    monkeypatch.setattr(runner_mod, "run_unit", lambda unit: pytest.fail("plot must not train"))
    monkeypatch.setattr(runner_mod, "run_experiment", lambda *a, **k: pytest.fail("plot must not run"))
    time.sleep(0.01)
    for p in (out / "figures").glob("*.png"):
        p.unlink()
    assert main(["plot", str(out)]) == 0
    assert f"wrote {len(first)} figures" in capsys.readouterr().out
    assert {p.name for p in (out / "figures").glob("*.png")} == set(first)
    assert {p: p.stat().st_mtime_ns for p in results} == stamps

    assert main(["plot", str(out), "--out", str(tmp_path / "elsewhere")]) == 0
    assert (tmp_path / "elsewhere" / "loss__spheres-2d.png").is_file()


def test_plot_of_a_non_experiment_dir(tmp_path, capsys):
    assert main(["plot", str(tmp_path)]) == 2
    assert "not an experiment directory" in capsys.readouterr().err


def test_plot_of_an_experiment_without_results(tmp_path, capsys):
    (tmp_path / "experiment.json").write_text(json.dumps(parse_config(TINY_G1D).to_dict()))
    assert main(["plot", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert f"no figures could be drawn from {tmp_path}: it has no finished run with a history" in err
    assert not list(tmp_path.glob("figures/*"))


def test_experiment_with_failed_runs_writes_everything_then_exits_1(tmp_path, capsys):
    cfg_path, out = tmp_path / "exp.toml", tmp_path / "out"
    cfg_path.write_text(TINY_TOML + "\n[solver]\nmax_num_steps = 1\n")  # every solve exceeds one step: runs fail
    argv = ["experiment", str(cfg_path), "--out", str(out), "--no-progress", "--repeats", "1", "--max-iterations", "2"]
    assert main(argv) == 1
    captured = capsys.readouterr()
    assert f"results in {out}: report.html, report.md, aggregate.json" in captured.out
    last = captured.err.strip().splitlines()[-1]
    assert last.startswith("anode: 2 of 2 runs failed")
    assert last.endswith("to retry only the failed runs: anode " + " ".join(argv) + " --retry-failed")
    md = (out / "report.md").read_text()
    assert "Runs finished: 2, of which 2 failed" in md
    failed = read_json(out / "runs" / "spheres-2d" / "node" / "seed-0" / "result.json")
    assert failed["status"] == "failed" and failed["error_type"] == "MaxStepsExceeded"

    stamp = (out / "runs" / "spheres-2d" / "node" / "seed-0" / "result.json").stat().st_mtime_ns
    time.sleep(0.01)
    assert main([*argv, "--retry-failed"]) == 1  # retried (they fail again)
    assert (out / "runs" / "spheres-2d" / "node" / "seed-0" / "result.json").stat().st_mtime_ns != stamp
    assert capsys.readouterr().err.strip().splitlines()[-1].endswith(" ".join(argv) + " --retry-failed")


def test_experiment_fresh_moves_the_previous_results_aside(tmp_path, capsys):
    cfg_path, out = tmp_path / "exp.toml", tmp_path / "out"
    cfg_path.write_text(TINY_TOML)
    argv = ["experiment", str(cfg_path), "--out", str(out), "--no-progress", "--repeats", "1", "--max-iterations", "1",
            "--no-figures"]
    assert main(argv) == 0
    assert main([*argv, "--fresh"]) == 0
    (old,) = tmp_path.glob("out.old-*")
    assert (old / "runs" / "spheres-2d" / "node" / "seed-0" / "result.json").is_file()
    assert (out / "runs" / "spheres-2d" / "node" / "seed-0" / "result.json").is_file()
    assert "figures/" not in capsys.readouterr().out.strip().splitlines()[-1]
    assert "## Figures" not in (out / "report.md").read_text()


# ----------------------------------------------------------------------------- reproduce


def usage_error(capsys, argv: list[str]) -> str:
    """Run `anode ARGV`, expect argparse's usage error (exit 2) and return stderr."""
    with pytest.raises(SystemExit) as info:
        main(argv)
    assert info.value.code == 2
    return capsys.readouterr().err


def test_reproduce_toy_unknown_budget(tmp_path, capsys):
    err = usage_error(capsys, ["reproduce", "toy", "--budget", "huge", "--out", str(tmp_path / "out")])
    assert "argument --budget: invalid choice: 'huge' (choose from 'smoke', 'default', 'full')" in err
    assert not (tmp_path / "out").exists()


def test_reproduce_toy_refuses_image_only_options(tmp_path, capsys):
    err = usage_error(capsys, ["reproduce", "toy", "--epochs", "2", "--report-only", "--out", str(tmp_path / "out")])
    assert "unrecognized arguments: --epochs 2 --report-only" in err
    assert not (tmp_path / "out").exists()


def test_reproduce_budget_and_full_exclude_each_other(tmp_path, capsys):
    err = usage_error(capsys, ["reproduce", "toy", "--budget", "smoke", "--full", "--out", str(tmp_path / "out")])
    assert "argument --full: not allowed with argument --budget" in err


def test_out_must_not_be_a_file(tmp_path, capsys):
    path = tmp_path / "taken"
    path.write_text("")
    err = usage_error(capsys, ["reproduce", "toy", "--budget", "smoke", "--out", str(path)])
    assert f"'{path}' is a file, not a folder" in err


def test_reproduce_images_refuses_zero_jobs(tmp_path, capsys):
    with pytest.raises(SystemExit):
        main(["reproduce", "images", "--dataset", "mnist", "--jobs", "0", "--out", str(tmp_path / "out")])
    assert "argument --jobs: expected a positive integer, got '0'" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_python_dash_m_anode_runs_the_cli():
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-m", "anode", "--version"], capture_output=True, text=True, check=True)
    assert done.stdout.startswith("anode ")


def test_reproduce_images_needs_a_dataset(tmp_path, capsys):
    err = usage_error(capsys, ["reproduce", "images", "--out", str(tmp_path / "out")])
    assert "the following arguments are required: --dataset" in err


def test_reproduce_images_unknown_dataset_and_budget(tmp_path, capsys):
    err = usage_error(capsys, ["reproduce", "images", "--dataset", "imagenet", "--out", str(tmp_path / "out")])
    assert "argument --dataset: invalid choice: 'imagenet' (choose from 'mnist', 'idx'" in err
    err = usage_error(capsys, ["reproduce", "images", "--dataset", "mnist", "--budget", "huge", "--out", str(tmp_path / "out")])
    assert "argument --budget: invalid choice: 'huge' (choose from 'smoke', 'small', 'paper')" in err


def test_reproduce_images_missing_data_is_a_setup_error(tmp_path, capsys):
    missing = tmp_path / "no-data-here"
    assert main(["reproduce", "images", "--dataset", "mnist", "--budget", "smoke", "--data-dir", str(missing),
                 "--out", str(tmp_path / "out"), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("anode: error:") and str(missing) in err
    assert not (tmp_path / "out").exists()


def test_reproduce_images_report_only_refuses_fresh(tmp_path, capsys):
    assert main(["reproduce", "images", "--dataset", "mnist", "--report-only", "--fresh", "--out", str(tmp_path / "out")]) == 2
    assert "--report-only trains nothing, so --fresh and --retry-failed cannot apply" in capsys.readouterr().err


def test_reproduce_images_passes_options_and_exits_1_on_failed_runs(tmp_path, capsys, monkeypatch):
    """The CLI side of `reproduce images`: every option reaches the library; failed runs give exit 1."""
    import anode.lab.reproduce.images as ri

    calls = []

    def fake(out_dir, **kwargs):
        calls.append(kwargs)
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        groups = [{"completed": 1, "failed": 1}, {"completed": 2, "failed": 0}]
        (out / "summary.json").write_text(json.dumps({"aggregate": {"groups": groups}}))
        (out / "report.html").write_text("<html></html>")
        return out / "report.html"

    monkeypatch.setattr(ri, "reproduce_images", fake)
    monkeypatch.setenv("ANODE_DATA_DIR", str(tmp_path))  # the data folder comes from the environment
    out = tmp_path / "out"
    argv = ["reproduce", "images", "--dataset", "cifar10", "--full", "--out", str(out), "--sweep-p", "1,2",
            "--repeats", "3", "--epochs", "2", "--jobs", "2", "--device", "cpu", "--fresh", "--no-progress"]
    assert main(argv) == 1
    (kwargs,) = calls
    assert kwargs == {"dataset": "cifar10", "experiment": "table1", "data_dir": None, "budget": "paper", "device": "cpu", "progress": False,
                      "sweep_p": (1, 2), "weight_decay": None, "repeats": 3, "epochs": 2, "jobs": 2, "train": True,
                      "fresh": True, "retry_failed": False, "backend": "local"}
    captured = capsys.readouterr()
    assert f"report: {out / 'report.html'}" in captured.out
    last = captured.err.strip().splitlines()[-1]
    assert last.startswith("anode: 1 of 4 runs failed")
    retry = "anode " + " ".join(a for a in argv if a != "--fresh") + " --retry-failed"
    assert last.endswith(f"to retry only the failed runs: {retry}")


def test_retry_hint_after_report_only_drops_report_only(tmp_path, capsys, monkeypatch):
    import anode.lab.reproduce.images as ri

    def fake(out_dir, **kwargs):
        Path(out_dir).mkdir(parents=True, exist_ok=True)
        (Path(out_dir) / "summary.json").write_text(json.dumps({"aggregate": {"groups": [{"completed": 0, "failed": 2}]}}))
        return Path(out_dir) / "report.html"

    monkeypatch.setattr(ri, "reproduce_images", fake)
    out = tmp_path / "out"
    assert main(["reproduce", "images", "--dataset", "mnist", "--report-only", "--out", str(out)]) == 1
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert last.startswith("anode: 2 of 2 runs failed")
    assert last.endswith(f"anode reproduce images --dataset mnist --out {out} --retry-failed")


def test_reproduce_unknown_suite(tmp_path, capsys):
    err = usage_error(capsys, ["reproduce", "imagenet", "--out", str(tmp_path)])
    assert "invalid choice: 'imagenet'" in err


def test_smoke_budget_of_the_suite():
    suite, configs, note = reproduce_mod.load_suite("toy", "smoke")
    assert [c.name for c in configs] == ["flow_g1d", "spheres", "generalisation", "weight_decay", "augmentation",
                                         "beyond_g1d", "beyond_spheres"]
    assert all((c.repeats, c.train.epochs, c.train.max_iterations) == (1, 1, 5) for c in configs)
    assert "smoke" in note and suite["title"]
    _, default, _ = reproduce_mod.load_suite("toy", "default")
    assert [c.repeats for c in default] == [4, 4, 4, 4, 4, 3, 3]  # the beyond-the-paper experiments: 3


TINY_G1D = {
    "name": "flow_g1d", "repeats": 1,
    "train": {"epochs": 1, "batch_size": 16, "max_iterations": 2, "loss": "mse"},
    "datasets": [{"kind": "g1d", "name": "identity", "num_points": 16, "target_flip": False},
                 {"kind": "g1d", "name": "g1d", "num_points": 16}],
    "models": [{"name": "NODE", "role": "baseline", "kind": "flow", "hidden_dim": 8},
               {"name": "ANODE (p=1)", "role": "augmented", "kind": "flow", "hidden_dim": 8, "augment_dim": 1}],
    "artifacts": {"trajectories": 4, "timesteps": 5, "vector_field": True},
}


def check_toy_report(out: Path, budget: str) -> dict:
    for name in ("report.html", "report.md", "summary.json"):
        assert (out / name).is_file(), name
    summary = json.loads((out / "summary.json").read_text())
    assert summary["budget"] == budget
    claims = summary["claims"]
    assert len(claims) == 14 and all(c["verdict"] in VERDICTS for c in claims)
    page = (out / "report.html").read_text()
    assert "data:image/png;base64," in page and 'src="figures' not in page
    md = (out / "report.md").read_text()
    for c in claims:
        assert c["verdict"] in md
    return summary


def test_reproduce_toy_cli_fast(tmp_path, capsys, monkeypatch):
    """`anode reproduce toy` end to end on one tiny experiment (the suite replaced)."""
    real_load_suite = reproduce_mod.load_suite

    def tiny_suite(kind, budget):
        suite, _, note = real_load_suite(kind, budget)
        return suite, [parse_config(TINY_G1D)], note

    monkeypatch.setattr(reproduce_mod, "load_suite", tiny_suite)
    real_run, run_kwargs = reproduce_mod.run_suite, []

    def recording_run(configs, out_dir, **kwargs):
        run_kwargs.append(kwargs)
        return real_run(configs, out_dir, **kwargs)

    monkeypatch.setattr(reproduce_mod, "run_suite", recording_run)
    out = tmp_path / "out"
    (out / "old-experiment").mkdir(parents=True)  # --fresh moves the whole previous folder aside, once
    assert main(["reproduce", "toy", "--budget", "smoke", "--out", str(out), "--no-progress", "--jobs", "1",
                 "--fresh", "--retry-failed"]) == 0
    assert [(k["retry_failed"], k["executor"].jobs) for k in run_kwargs] == [(True, 1)]
    moved = [p for p in tmp_path.iterdir() if p.name.startswith("out.old-")]
    assert len(moved) == 1 and (moved[0] / "old-experiment").is_dir() and not (out / "old-experiment").exists()
    assert f"report: {out / 'report.html'}" in capsys.readouterr().out
    summary = check_toy_report(out, "smoke")
    verdicts = [c["verdict"] for c in summary["claims"]]
    assert verdicts[:2] == [TOO_FEW] * 2 and verdicts[2:] == [NOT_RUN] * 12  # only flow_g1d ran, once
    assert summary["jobs"] == 1 and set(summary["aggregates"]) == {"flow_g1d"}
    assert (out / "flow_g1d" / "aggregate.json").is_file()
    figs = {p.name for p in (out / "figures").glob("*.png")}
    assert {"flow_g1d__flow__g1d__node.png", "flow_g1d__field__g1d__node.png", "flow_g1d__loss__g1d.png"} <= figs
    assert "## Section 3 / Fig. 3" in (out / "report.md").read_text()


def test_reproduce_toy_smoke_end_to_end(tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["reproduce", "toy", "--budget", "smoke", "--out", str(out), "--no-progress", "--jobs", "1"]) == 0
    summary = check_toy_report(out, "smoke")
    assert set(summary["aggregates"]) == {"flow_g1d", "spheres", "generalisation", "weight_decay", "augmentation",
                                          "beyond_g1d", "beyond_spheres"}
    assert all(g["completed"] == 1 for agg in summary["aggregates"].values() for g in agg["groups"])
    assert {c["verdict"] for c in summary["claims"]} == {TOO_FEW}  # one repeat: no "holds", no "does not hold"
    md = (out / "report.md").read_text()
    assert "| holds |" not in md and "| does not hold |" not in md and "Welch" in md
    assert len(list((out / "figures").glob("*.png"))) >= 10
