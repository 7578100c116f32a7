"""The config reference (docs/config.md) is generated from the schema and kept in step with it."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from anode.lab import docgen
from anode.lab.cli import main
from anode.lab.experiments.config import DATASET_KINDS, ExperimentConfig, ModelSpec, SearchSpec

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "config.md"


def test_docs_config_md_is_the_generated_reference() -> None:
    assert DOC.read_text(encoding="utf-8") == docgen.config_reference(), (
        "docs/config.md is stale: regenerate it with `PYTHONPATH=src python -m anode.lab.docgen > docs/config.md`")


def test_every_schema_field_has_a_meaning() -> None:
    missing = docgen.missing_meanings()
    assert not missing, f"add these keys to anode.lab.docgen.MEANINGS: {missing}"


def test_every_meaning_names_a_schema_field() -> None:
    stale = docgen.stale_meanings()
    assert not stale, f"MEANINGS has entries for keys the schema does not have (remove or rename them): {stale}"


def test_the_reference_lists_every_key_with_type_and_default() -> None:
    text = docgen.config_reference()
    for cls in (ExperimentConfig, ModelSpec, SearchSpec, *DATASET_KINDS.values()):
        for f in dataclasses.fields(cls):
            assert f"| `{f.name}` |" in text, f"{cls.__name__}.{f.name}"
    for kind in DATASET_KINDS:
        assert f'### `kind = "{kind}"`' in text
    assert '| `loss` | string | `"huber"` |' in text
    assert "| `name` | string | **required** |" in text
    assert "| `holdout_angle` | [number, number], optional | none (omit the key) |" in text
    assert "[search]" in text and 'space = { lr = [1e-3, 3e-3], hidden_dim = [16, 32] }' in text
    assert "| `<experiment>.repeats` | integer |" in text and "| `batch_size` | integer | the config's |" in text


def test_budget_keys_match_the_suite_readers() -> None:
    from anode.lab.reproduce.images import IMAGE_BUDGET_KEYS
    from anode.lab.reproduce.toy import BUDGET_KEYS

    assert [k for k, _, _ in docgen._TOY_BUDGET] == ["note", *BUDGET_KEYS]
    assert [k for k, _, _ in docgen._IMAGE_BUDGET] == ["note", *IMAGE_BUDGET_KEYS]


def test_search_example_in_the_reference_is_a_valid_config() -> None:
    import tomllib

    from anode.lab.experiments.config import parse_config

    example = docgen._SEARCH_EXAMPLE.split("```toml\n", 1)[1].rsplit("```", 1)[0]
    data = {"name": "x", "datasets": [{"kind": "g1d", "name": "g1d"}], "models": [{"name": "NODE"}], **tomllib.loads(example)}
    cfg = parse_config(data)
    assert cfg.search is not None and cfg.search.space == {"lr": [1e-3, 3e-3], "hidden_dim": [16, 32]}


def test_config_docs_command(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["config-docs"]) == 0
    assert capsys.readouterr().out == docgen.config_reference()
    out = tmp_path / "config.md"
    assert main(["config-docs", "--out", str(out)]) == 0
    assert out.read_text(encoding="utf-8") == docgen.config_reference()
