"""The house shows its data flow (DESIGN §1, §2): stages import only the stages before them, only web/ imports
Flask, the app factory is wiring, and no route can forget authentication."""

from __future__ import annotations

import ast
import inspect
from pathlib import Path

import pytest

import cds_service
from cds_service.web import app as app_module
from cds_service.web.app import create_app

PKG = Path(cds_service.__file__).parent
# what each stage may import from the others (its own package always); top-level modules are listed by name
MAY_IMPORT = {
    "fhir": {"config", "paths"},
    "facts": {"fhir"},
    "rules": {"config", "fhir", "facts"},  # config: the typed settings a topic runs by
    "cards": {"config", "fhir", "facts", "rules", "storage"},  # repeats are remembered in a first-use memory
    "gather": {"fhir"},  # just above fhir/: discovery's source attributes are the registry's (rules/ruleset.py)
    "storage": set(),
    # the population sweep sits with the commands: it drives the engine the hooks use, and the report's chart
    "sweep": {"config", "fhir", "facts", "gather", "rules", "engine", "report"},
}


def _imports(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text("utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
        elif isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
    return names


def _stage_of(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if parts[0] == "cds_service" and len(parts) > 1 else None


@pytest.mark.parametrize("stage", sorted(MAY_IMPORT))
def test_a_stage_imports_only_the_stages_before_it(stage):
    wrong = []
    for path in (PKG / stage).rglob("*.py"):
        for module in _imports(path):
            used = _stage_of(module)
            if used and used != stage and used not in MAY_IMPORT[stage]:
                wrong.append(f"{path.relative_to(PKG)} imports {module}")
    assert not wrong, wrong


def test_only_the_web_package_imports_flask():
    importers = sorted(
        str(p.relative_to(PKG))
        for p in PKG.rglob("*.py")
        if any(m == "flask" or m.startswith(("flask.", "werkzeug")) for m in _imports(p))
        and p.relative_to(PKG).parts[0] != "web"
    )
    assert importers == ["cli.py"], importers  # cli runs werkzeug's development server, and only that


def test_the_app_factory_is_wiring_only():
    lines = inspect.getsource(app_module.create_app).splitlines()
    assert len(lines) <= 40, len(lines)
    assert "gc.freeze()" not in inspect.getsource(app_module)  # process-wide tuning is the entry points'


def test_no_route_can_forget_authentication(settings_factory, jwks):
    """Every route of the app, called without a token, is refused, unless it is marked public (monitoring) or is
    a CORS preflight; an operator-only route does not even exist without the operator token."""
    app = create_app(
        settings_factory(auth={"required": True, "issuers": [{"iss": "https://ehr.example.org", "jwks": jwks}]})
    )
    client = app.test_client()
    public, checked = set(), 0
    for rule in app.url_map.iter_rules():
        if rule.endpoint == "static":
            continue
        view = app.view_functions[rule.endpoint]
        path = rule.rule.replace("<service_id>", "her2-order-select")
        for method in sorted((rule.methods or set()) - {"HEAD", "OPTIONS"}):
            resp = client.open(path, method=method, json={})
            if getattr(view, "public", False):
                public.add(rule.rule)
                assert resp.status_code in (200, 503), (method, path)
            elif getattr(view, "operator_only", False):
                assert resp.status_code == 404, (method, path)
            else:
                assert resp.status_code == 401, (method, path, resp.status_code)
            checked += 1
    assert public == {"/healthz", "/readyz", "/metrics"}
    assert checked >= 7


def test_every_setting_has_its_default_in_defaults_yaml():
    """One place for each default: every property the configuration schema names has its value in
    defaults.yaml, so no code needs a fallback of its own (`cfg.get(key, 30)`)."""
    import json

    import yaml

    schema = json.loads((PKG / "config.schema.json").read_text("utf-8"))
    defaults = yaml.safe_load((PKG / "defaults.yaml").read_text("utf-8"))
    missing = []

    def walk(node: dict, values: object, path: str) -> None:
        for key, sub in node.get("properties", {}).items():
            if not isinstance(values, dict) or key not in values:
                missing.append(path + key)
            elif sub.get("type") == "object" and "properties" in sub:
                walk(sub, values[key], f"{path}{key}.")

    walk(schema, defaults, "")
    assert not missing, missing
    assert '"default"' not in json.dumps(schema)  # defaults.yaml is the one place, not the schema too


def test_readme_shows_the_clinical_rules_the_code_holds():
    """README's "Clinical rules" section is the code's own tables: a change to either without the other fails."""
    from cds_service.clinical_rules import BEGIN, END, section

    readme = (PKG.parent / "README.md").read_text("utf-8")
    assert readme.count(BEGIN) == 1 and readme.count(END) == 1
    shown = readme[readme.index(BEGIN) : readme.index(END) + len(END)]
    assert shown == section(), "README's clinical rules differ from the code: python -m cds_service.clinical_rules"


def test_every_row_of_the_her2_table_decides_some_result():
    """No row of the §6.1 table is shadowed by the rows above it: for each row, a result built to match it gets
    that row's category."""
    from cds_service.facts.her2 import HER2_TABLE, Her2Values, categorise

    stain = {
        "faint ≤10%": {"membrane": "faint-le-10"},
        "0+ notation": {"membrane": "notation"},
        "absent": {"membrane": "absent"},
        ">10%": {"membrane_pct": 30.0},
        "not stated": {},
        "cannot be told": {"membrane_pct": 5.0, "membrane_pct_cmp": ">"},
    }
    for row in HER2_TABLE:
        values = {} if row.ihc == "none" else {"ihc": int(row.ihc.rstrip("+"))}
        if row.ish:
            values["ish"] = sorted(row.ish)[0]
        if row.staining:
            values.update(stain[sorted(row.staining)[0]])
        if row.reported:
            values["binary"] = sorted(row.reported)[0]
        assert categorise(Her2Values(**values)).category == row.category, (row, values)
