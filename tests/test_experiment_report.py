"""The report of `anode experiment` (anode.lab.experiment_report) and write_report without claims."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import pytest

from anode.lab.experiment_report import figure_sections, results_listing, summary_lines, write_experiment_report
from anode.lab.experiments import parse_config
from anode.lab.report import NO_CLAIMS, run_counts, runs_line, summary_run_counts, write_report

CFG = parse_config({
    "name": "tiny", "description": "two models on g1d", "repeats": 2,
    "train": {"epochs": 3, "batch_size": 16, "max_iterations": 5},
    "datasets": [{"kind": "g1d", "name": "g1d"}],
    "models": [{"name": "NODE", "kind": "flow", "hidden_dim": 8}, {"name": "ANODE (p=1)", "kind": "flow", "augment_dim": 1}],
})


def group(model: str, completed: int, failed: int) -> dict:
    stats = {"mean": 0.5, "std": 0.1, "n": completed}
    return {"dataset": "g1d", "model": model, "completed": completed, "failed": failed,
            **{k: stats for k in ("final_loss", "mean_nfe_forward", "final_nfe_forward", "nfe_growth", "eval_loss",
                                  "eval_accuracy", "time_per_iteration")},
            "num_parameters": {"mean": 100.0, "std": 0.0, "n": completed}}


AGG = {"experiment": "tiny", "groups": [group("NODE", 2, 0), group("ANODE (p=1)", 1, 1)]}


@pytest.fixture()
def png(tmp_path: Path) -> Path:
    from matplotlib.figure import Figure

    from anode.plotting import save_figure

    fig = Figure()
    fig.add_subplot().plot([0, 1], [1, 0])
    return save_figure(fig, tmp_path / "figures" / "loss__g1d.png")


def test_run_counts_sum_the_groups() -> None:
    assert run_counts({"tiny": AGG}) == (1, 4)
    assert run_counts({"a": AGG, "b": AGG}) == (2, 8)
    assert runs_line({"tiny": AGG}).startswith("Runs finished: 4, of which 1 failed (")
    assert runs_line({"tiny": {"groups": [group("NODE", 2, 0)]}}) == "Runs finished: 2, of which 0 failed."


def test_summary_run_counts_reads_toy_and_image_summaries(tmp_path: Path) -> None:
    import json

    (tmp_path / "summary.json").write_text(json.dumps({"aggregates": {"a": AGG, "b": AGG}}))
    assert summary_run_counts(tmp_path) == (2, 8)
    (tmp_path / "summary.json").write_text(json.dumps({"aggregate": AGG}))
    assert summary_run_counts(tmp_path) == (1, 4)
    (tmp_path / "summary.json").write_text("{}")
    with pytest.raises(ValueError, match="neither 'aggregates' nor 'aggregate'"):
        summary_run_counts(tmp_path)
    with pytest.raises(FileNotFoundError, match="no summary.json in"):
        summary_run_counts(tmp_path / "nowhere")


def test_write_report_without_claims_says_so(tmp_path: Path) -> None:
    md_path, html_path = write_report(tmp_path, title="T", summary=["a line"], claims=[], aggregates={"tiny": AGG},
                                      sections=[])
    md, page = md_path.read_text(), html_path.read_text()
    assert "## Claims\n\nNo claims are declared for this experiment.\n" in md
    assert "| paper claim |" not in md and "Claims (" not in md
    assert f"<p>{NO_CLAIMS}</p>" in page and "<th>paper claim</th>" not in page
    assert "| tiny | g1d | ANODE (p=1) | 1/1 |" in md  # the results table is still there


def test_summary_lines_name_command_budget_machine_time_and_runs() -> None:
    lines = summary_lines(CFG, AGG, command="anode experiment x.toml --out o", device="cpu", wall_time_s=90)
    text = "\n".join(lines)
    assert "Command: `anode experiment x.toml --out o`" in text
    assert "Config: tiny: two models on g1d." in text
    assert "Budget: 2 repeat(s), 3 epoch(s) at batch 16, at most 5 iterations per run" in text
    assert "Machine: " in text and "CPU cores" in text
    assert "Wall time of this invocation: 1.5 min." in text
    assert lines[-1].startswith("Runs finished: 4, of which 1 failed")


def test_figure_sections_caption_every_figure(png: Path) -> None:
    (section,) = figure_sections([png])
    assert section.title == "Figures" and section.figures == [("loss / g1d", png)]
    assert figure_sections([]) == []


def test_write_experiment_report_embeds_figures(tmp_path: Path, png: Path) -> None:
    html_path = write_experiment_report(tmp_path, config=CFG, aggregate=AGG, figures=[png], command="anode experiment x",
                                        device="cpu", wall_time_s=1.0)
    assert html_path == tmp_path / "report.html"
    md = (tmp_path / "report.md").read_text()
    assert md.startswith("# anode experiment: tiny") and "![loss / g1d](figures/loss__g1d.png)" in md
    assert "data:image/png;base64," in html_path.read_text()


def test_results_listing_names_only_what_exists(tmp_path: Path, png: Path) -> None:
    assert results_listing(tmp_path) == f"results in {tmp_path}: figures/ (1 file)"
    (tmp_path / "aggregate.json").write_text("{}")
    (tmp_path / "runs").mkdir()
    assert results_listing(tmp_path) == f"results in {tmp_path}: aggregate.json, runs/, figures/ (1 file)"
    assert results_listing(tmp_path / "empty") == f"results in {tmp_path / 'empty'}: nothing was written"
