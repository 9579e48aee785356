"""Every module of the project imports on its own, first, in a fresh interpreter.

An import cycle only breaks the module a reader happens to import first: the suite, which
imports in its own order, stays green while `import central.projections.daily` fails. So
each module is imported with none of the project's modules loaded before it (one
subprocess; the project's modules are dropped from sys.modules between imports, the
third-party ones are kept because they cannot form a cycle with ours).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("agent", "config", "rules", "drivers", "firmware_bridge", "central")
# Not modules to import: `python -m` entry points run their program, and Alembic's
# environment and revision scripts run only inside an Alembic migration context.
NOT_IMPORTED = ("__main__.py", "/migrations/")

IMPORT_EACH_ALONE = """
import importlib, json, sys, traceback
packages = tuple(sys.argv[1].split(","))
failures = {}
for name in sys.argv[2:]:
    for loaded in [m for m in sys.modules if m.split(".")[0] in packages]:
        del sys.modules[loaded]
    try:
        importlib.import_module(name)
    except BaseException:
        failures[name] = traceback.format_exc(limit=-3)
print(json.dumps(failures))
"""


def project_modules() -> list[str]:
    names = []
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            relative = path.relative_to(ROOT).as_posix()
            if any(part in f"/{relative}" for part in NOT_IMPORTED):
                continue
            dotted = relative.removesuffix(".py").removesuffix("/__init__").replace("/", ".")
            names.append(dotted)
    return names


def test_every_module_imports_first_with_no_cycle() -> None:
    modules = project_modules()
    assert len(modules) > 100 and "central.projections.daily" in modules
    done = subprocess.run(
        [sys.executable, "-c", IMPORT_EACH_ALONE, ",".join(PACKAGES), *modules],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    failures = json.loads(done.stdout)
    assert failures == {}, "\n".join(f"{name}:\n{tb}" for name, tb in failures.items())
