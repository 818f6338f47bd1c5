"""The deployment files (Procfile, docker-compose.yml, Dockerfile) name the right processes and settings.

docker-compose.yml is checked by `docker compose config` (or the older `docker-compose config`) where
either is installed; it is always parsed as YAML and its services, commands and environment checked."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
SERVICES = {"redis", "worker-1", "worker-2", "flower", "web"}
FLEET_ENV = {"BELUGA_BROKER_URL": "redis://redis:6379/0", "BELUGA_IMPORTS": "beluga.demo"}


def _procfile() -> dict[str, str]:
    lines = (ROOT / "Procfile").read_text().splitlines()
    entries = [re.match(r"^([A-Za-z0-9_-]+):\s*(.+)$", line) for line in lines if line and not line.startswith("#")]
    assert all(entries), f"every line of the Procfile is `name: command` or a comment: {lines}"
    return {m.group(1): m.group(2) for m in entries if m}


def test_procfile_names_worker_flower_and_web() -> None:
    procs = _procfile()
    assert set(procs) == {"worker", "flower", "web"}     # no beat: the scheduler runs inside each worker
    assert procs["worker"].startswith("celery -A beluga worker")
    assert procs["flower"].startswith("celery -A beluga flower")
    assert procs["web"].startswith("flask --app examples.flask_app run")
    assert "--host 0.0.0.0" in procs["web"] and "--port $PORT" in procs["web"]
    assert "scheduler" in (ROOT / "Procfile").read_text()   # the comment saying why there is no such process


def test_web_entry_point_exists() -> None:
    from examples import flask_app

    assert callable(flask_app.create_app)           # what `flask --app examples.flask_app` looks for


def _compose_cli() -> list[str] | None:
    docker = shutil.which("docker")
    if docker and subprocess.run([docker, "compose", "version"], capture_output=True).returncode == 0:
        return [docker, "compose"]
    legacy = shutil.which("docker-compose")
    return [legacy] if legacy else None


def _compose() -> dict[str, Any]:
    text = (ROOT / "docker-compose.yml").read_text()
    try:
        import yaml
    except ImportError:                              # no PyYAML: the textual checks below still run
        return {"text": text}
    return {"text": text, "data": yaml.safe_load(text)}


def test_compose_file_is_valid_for_docker_compose() -> None:
    cli = _compose_cli()
    if cli is not None:
        out = subprocess.run([*cli, "-f", str(ROOT / "docker-compose.yml"), "config", "-q"],
                             capture_output=True, text=True, cwd=ROOT)
        assert out.returncode == 0, out.stderr
    compose = _compose()
    for name in SERVICES:
        assert re.search(rf"^  {re.escape(name)}:", compose["text"], re.M), f"service {name} missing"
    for var, value in FLEET_ENV.items():
        assert f"{var}: {value}" in compose["text"]


def test_compose_services_commands_and_env() -> None:
    data = _compose().get("data")
    if data is None:
        return  # without PyYAML the textual test above covers what it can
    services = data["services"]
    assert set(services) == SERVICES
    assert services["redis"]["image"] == "redis:7"
    assert "redis-data:/data" in services["redis"]["volumes"]
    for name in SERVICES - {"redis"}:
        svc = services[name]
        assert svc["build"] == "." and svc["environment"] == FLEET_ENV, name
        assert "redis" in svc["depends_on"], name
    for name in ("worker-1", "worker-2"):
        command = services[name]["command"]
        assert command[:4] == ["celery", "-A", "beluga", "worker"]
        assert f"{name}@%h" in command                  # distinct node names
    assert services["flower"]["command"][:4] == ["celery", "-A", "beluga", "flower"]
    assert services["flower"]["ports"] == ["5555:5555"]
    assert services["web"]["command"][:4] == ["flask", "--app", "examples.flask_app", "run"]
    assert services["web"]["ports"] == ["8000:8000"]
    assert not any("beat" in " ".join(svc.get("command") or []) for svc in services.values())


def test_dockerfile_installs_beluga_with_flower_and_flask() -> None:
    text = (ROOT / "Dockerfile").read_text()
    assert re.search(r"^FROM python:3\.11-slim$", text, re.M)
    assert "pip install -e '.[flower]' flask" in text
    assert re.search(r"^flower = \[", (ROOT / "pyproject.toml").read_text(), re.M)   # the extra it installs
    ignored = (ROOT / ".dockerignore").read_text().split()
    assert {".git", ".venv", "**/__pycache__"} <= set(ignored)
