#!/usr/bin/env bash
# Mutation testing of the clinical core (facts and rules), as a script, not in CI:
#   bash tests/mutation/run.sh            # runs mutmut (configured in pyproject.toml [tool.mutmut])
# It installs mutmut into .venv, mutates the modules listed under paths_to_mutate, runs the clinical
# tests against each mutant and prints the score (killed / all). Takes tens of minutes on 2 cores.
set -euo pipefail
cd "$(dirname "$0")/../.."
.venv/bin/pip install -q "mutmut>=3.3,<4"
rm -rf mutants
.venv/bin/mutmut run --max-children "${MUTMUT_CHILDREN:-2}" > mutmut.log 2>&1 || tail -c 2000 mutmut.log
.venv/bin/python - <<'PY'
import collections, subprocess
out = subprocess.run([".venv/bin/mutmut", "results", "--all", "true"], capture_output=True, text=True).stdout
status = collections.Counter(line.rsplit(":", 1)[-1].strip() for line in out.splitlines() if ":" in line)
by_module = collections.defaultdict(collections.Counter)
for line in out.splitlines():
    if ":" in line:
        name, state = line.strip().rsplit(":", 1)
        by_module[name.split(".x")[0].split(".xǁ")[0]][state.strip()] += 1
for module, counts in sorted(by_module.items()):
    tested = counts["killed"] + counts["survived"] + counts["timeout"]
    print(f"{module:40} killed {counts['killed']:5} of {tested:5} ({counts['killed'] / max(tested, 1):.1%})")
killed = status.get("killed", 0) + status.get("timeout", 0)
tested = killed + status.get("survived", 0)
print(dict(status))
print(f"mutation score: {killed}/{tested} tested mutants killed = {killed / tested:.1%}" if tested else "no mutants")
PY
