"""The core is pure: it imports no adapter, no I/O and no clock (STYLE.md, principles 1 and 2)."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CORE = ROOT / "beluga" / "core"
CORE_FILES = sorted(CORE.glob("*.py"))

FORBIDDEN_EVERYWHERE = {"time", "threading", "sqlite3", "redis", "celery", "kombu", "random", "asyncio",
                        "socket", "subprocess", "multiprocessing", "concurrent"}
ALLOWED = {"context.py": {"random"}}  # only as random.Random(seed), checked below


def imported_modules(path: Path) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
    return found


def test_core_modules_are_found() -> None:
    assert {p.name for p in CORE_FILES} >= {"instance.py", "context.py", "commands.py", "records.py",
                                            "pending.py", "retry.py", "failure.py", "definitions.py"}


@pytest.mark.parametrize("path", CORE_FILES, ids=lambda p: p.name)
def test_core_module_imports_nothing_impure(path: Path) -> None:
    tops = {name.split(".")[0] for name in imported_modules(path)}
    bad = (tops & FORBIDDEN_EVERYWHERE) - ALLOWED.get(path.name, set())
    assert not bad, f"beluga/core/{path.name} imports {sorted(bad)}"
    ours = {name for name in imported_modules(path) if name.startswith("beluga")}
    outside = {name for name in ours if not name.startswith("beluga.core")}
    assert not outside, f"beluga/core/{path.name} imports adapters {sorted(outside)}"


def test_context_uses_random_only_as_a_seeded_generator() -> None:
    """`context.py` may build `random.Random(seed)`; the module-level functions (global state) are out."""
    tree = ast.parse((CORE / "context.py").read_text())
    aliases = {a.asname or a.name for node in ast.walk(tree) if isinstance(node, ast.Import)
               for a in node.names if a.name == "random"}
    assert aliases, "context.py no longer imports random: drop it from ALLOWED"
    uses = {node.attr for node in ast.walk(tree)
            if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in aliases}
    assert uses == {"Random"}
    calls = [node for node in ast.walk(tree) if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
             and isinstance(node.func.value, ast.Name) and node.func.value.id in aliases]
    assert all(len(c.args) == 1 for c in calls), "random.Random() must be given the run's seed"
    assert not any(isinstance(n, ast.ImportFrom) and n.module == "random" for n in ast.walk(tree))


def test_core_reads_no_clock_and_makes_no_random_ids() -> None:
    for path in CORE_FILES:
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name):
                call = f"{node.value.id}.{node.attr}"
                assert call not in {"uuid.uuid4", "uuid.uuid1", "datetime.now", "datetime.utcnow", "os.urandom",
                                    "date.today"}, f"beluga/core/{path.name} calls {call}"


def test_importing_the_core_loads_no_adapter() -> None:
    code = ("import sys, json; before = set(sys.modules); import beluga.core, beluga.core.instance, "
            "beluga.core.pending, beluga.core.failure; print(json.dumps(sorted(set(sys.modules) - before)))")
    out = subprocess.run([sys.executable, "-I", "-c", f"import sys; sys.path.insert(0, {str(ROOT)!r}); {code}"],
                         capture_output=True, text=True, check=True, cwd=ROOT)
    loaded = set(json.loads(out.stdout))
    forbidden = {"celery", "redis", "sqlite3", "_sqlite3", "kombu", "msgpack"}
    assert not {m.split(".")[0] for m in loaded} & forbidden
    ours = sorted(m for m in loaded if m.startswith("beluga") and m != "beluga" and not m.startswith("beluga.core"))
    assert ours == [], f"importing beluga.core loaded {ours}"
