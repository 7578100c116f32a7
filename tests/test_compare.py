"""`anode compare`: two reports' verdicts side by side."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from anode.lab.claims import HOLDS, INCONCLUSIVE, NOT_HOLD
from anode.lab.cli import main
from anode.lab.compare import ABSENT, compare_reports


def _report(folder: Path, claims: list[tuple[str, str, str]], machine: str | None = None) -> Path:
    folder.mkdir(parents=True)
    summary = {"claims": [{"claim": c, "verdict": v, "detail": d, "source": "s"} for c, v, d in claims],
               "aggregates": {}, **({"machine": machine} if machine else {})}
    (folder / "summary.json").write_text(json.dumps(summary))
    return folder


def test_equal_verdicts_exit_zero_and_show_both_statistics(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    a = _report(tmp_path / "a", [("A lowers B.", HOLDS, "t = 3, df = 4, p = 0.01")], machine="Intel box")
    b = _report(tmp_path / "b", [("A lowers B.", HOLDS, "t = 2.5, df = 4, p = 0.03")], machine="AMD box")
    assert main(["compare", str(a), str(b)]) == 0
    out = capsys.readouterr().out
    assert f"- {a}: Intel box" in out and f"- {b}: AMD box" in out
    assert "| A lowers B. | holds (t = 3, df = 4, p = 0.01) | holds (t = 2.5, df = 4, p = 0.03) |" in out
    assert "verdicts_compared: 1\nverdicts_differing: 0\n" in out and "≠" not in out


def test_a_changed_or_missing_verdict_is_a_difference(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    a = _report(tmp_path / "a", [("One.", NOT_HOLD, "p = 0.99"), ("Two.", HOLDS, ""), ("Only here.", HOLDS, "")])
    b = _report(tmp_path / "b", [("Two.", HOLDS, ""), ("One.", INCONCLUSIVE, "p = 0.92"), ("New.", INCONCLUSIVE, "")])
    pairs, machines = compare_reports(a, b)
    assert machines == ("machine not recorded", "machine not recorded")
    assert [(p.claim, p.verdicts, p.same) for p in pairs] == [  # the first report's order, then the second's extras
        ("One.", (NOT_HOLD, INCONCLUSIVE), False), ("Two.", (HOLDS, HOLDS), True),
        ("Only here.", (HOLDS, ABSENT), False), ("New.", (ABSENT, INCONCLUSIVE), False)]
    assert main(["compare", str(a), str(b)]) == 1
    out = capsys.readouterr().out
    assert "| ≠ | One. | does not hold (p = 0.99) | inconclusive (p = 0.92) |" in out
    assert "verdicts_differing: 3" in out


def test_a_claim_judged_on_two_sources_is_kept_apart(tmp_path: Path) -> None:
    claims = [("Same text.", HOLDS, ""), ("Same text.", INCONCLUSIVE, "")]
    pairs, _ = compare_reports(_report(tmp_path / "a", claims), _report(tmp_path / "b", claims))
    assert len(pairs) == 2 and all(p.same for p in pairs)


def test_a_folder_without_a_report_is_a_setup_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    a = _report(tmp_path / "a", [("One.", HOLDS, "")])
    assert main(["compare", str(a), str(tmp_path / "missing")]) == 2
    assert "no summary.json in" in capsys.readouterr().err
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "summary.json").write_text(json.dumps({"aggregates": {}}))
    with pytest.raises(ValueError, match="has no list of claims"):
        compare_reports(a, tmp_path / "bad")
    assert main(["compare", str(a), str(tmp_path / "bad")]) == 2


def test_compare_shows_each_part_of_a_claim(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    def parts(second: str) -> list[dict]:
        return [{"test": "NFE growth: NODE > ANODE", "dataset": "spheres 1d", "measured": "", "verdict": HOLDS, "detail": "p = 0.01"},
                {"test": "NFE growth: NODE > ANODE", "dataset": "spheres 2d", "measured": "", "verdict": second, "detail": "p = 0.2"}]

    a, b = tmp_path / "a", tmp_path / "b"
    for folder, second in ((a, HOLDS), (b, INCONCLUSIVE)):
        folder.mkdir()
        claim = {"claim": "Grows.", "verdict": second, "detail": "", "source": "s", "parts": parts(second)}
        (folder / "summary.json").write_text(json.dumps({"claims": [claim], "aggregates": {}}))
    assert main(["compare", str(a), str(b)]) == 1
    out = capsys.readouterr().out
    assert out.count("| differs | claim |") == 1
    assert "|  | ↳ part 1 (spheres 1d): NFE growth: NODE > ANODE | holds (p = 0.01) | holds (p = 0.01) |" in out
    assert "| ≠ | ↳ part 2 (spheres 2d): NFE growth: NODE > ANODE | holds (p = 0.2) | inconclusive (p = 0.2) |" in out
    assert "parts_compared: 2\nparts_differing: 1" in out


def test_parts_missing_from_an_older_report_are_shown_but_not_counted(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    part = {"test": "loss: ANODE < NODE", "dataset": "d", "measured": "", "verdict": HOLDS, "detail": "p = 0.01"}
    old, new = tmp_path / "old", tmp_path / "new"
    for folder, parts in ((old, None), (new, [part, part])):
        folder.mkdir()
        claim = {"claim": "Lower.", "verdict": HOLDS, "detail": "", "source": "s", **({"parts": parts} if parts else {})}
        (folder / "summary.json").write_text(json.dumps({"claims": [claim], "aggregates": {}}))
    assert main(["compare", str(old), str(new)]) == 0
    out = capsys.readouterr().out
    assert "|  | ↳ part 1 (d): loss: ANODE < NODE | absent | holds (p = 0.01) |" in out
    assert "parts_compared: 0\nparts_differing: 0" in out and "≠" not in out
