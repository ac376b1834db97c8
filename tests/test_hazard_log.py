"""The hazard log: every hazard names its control and at least one test, and every test it names exists."""

from __future__ import annotations

import ast
from pathlib import Path

import yaml

import cds_service

ROOT = Path(__file__).parent.parent
LOG = Path(cds_service.__file__).parent / "hazard_log.yaml"


def _functions(path: Path) -> set[str]:
    tree = ast.parse(path.read_text("utf-8"))
    return {n.name for n in ast.walk(tree) if isinstance(n, ast.FunctionDef)}


def test_every_hazard_has_a_control_and_tests_that_exist():
    hazards = yaml.safe_load(LOG.read_text("utf-8"))
    assert len(hazards) >= 10
    missing = []
    for h in hazards:
        assert h["hazard"] and h["control"], h["id"]
        assert h["tests"], f"{h['id']} names no test"
        for node in h["tests"]:
            file, _, func = node.partition("::")
            path = ROOT / file
            if not path.exists() or func not in _functions(path):
                missing.append(f"{h['id']}: {node}")
    assert not missing, missing


def test_the_ids_are_unique_and_the_knowledge_command_prints_the_log(capsys):
    from cds_service.cli import main

    hazards = yaml.safe_load(LOG.read_text("utf-8"))
    assert len({h["id"] for h in hazards}) == len(hazards)
    assert main(["knowledge"]) == 0
    out = capsys.readouterr().out
    assert "revised May 2026" in out and "| second dose reduction | 3.2 |" in out
    assert "## Hazard log" in out and all(h["id"] in out for h in hazards)
    assert "| endocrine-therapy | 0.2.0 | 2026-12-05 |" in out  # each value set with its review date
