"""The deployment files docs/production.md gives (docs/deploy/): a systemd unit, an environment file and
Kubernetes manifests. Each is parsed, and checked for what running Beluga needs: the right command (a
`beluga` command line through the real parser), restarts, a warm shutdown, persistence and noeviction for
Redis, services that reach their pods, secrets and config maps that exist, and settings that exist."""

from __future__ import annotations

import configparser
import os
import shlex
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from beluga.cli.parser import build
from beluga.settings import _ENV, Settings, _read_env_file

yaml = pytest.importorskip("yaml")

DEPLOY = Path(__file__).resolve().parent.parent / "docs" / "deploy"
UNIT = DEPLOY / "beluga-worker@.service"
ENV_FILE = DEPLOY / "beluga.env"
SETTINGS = set(_ENV.values())


# --- systemd ------------------------------------------------------------------------------------------

def _unit() -> configparser.ConfigParser:
    unit = configparser.ConfigParser(strict=False, interpolation=None, comment_prefixes=("#", ";"))
    unit.optionxform = str  # type: ignore[assignment,method-assign]  - systemd keys are case-sensitive
    unit.read_string(UNIT.read_text())
    return unit


def test_systemd_unit_runs_a_worker_that_restarts_and_shuts_down_warm() -> None:
    unit = _unit()
    assert set(unit.sections()) == {"Unit", "Service", "Install"}
    service = unit["Service"]
    exec_start = shlex.split(service["ExecStart"])
    assert exec_start[0].startswith("/"), "systemd needs an absolute path in ExecStart"
    assert exec_start[1:4] == ["-A", "beluga", "worker"] and exec_start[0].endswith("/celery"), exec_start
    hostname = exec_start[exec_start.index("--hostname") + 1]
    assert "%%h" in hostname, "systemd expands %h itself: Celery's %h must be written %%h in a unit"
    assert service["Restart"] in ("always", "on-failure")
    assert service["KillSignal"] == "SIGTERM" and int(service["TimeoutStopSec"]) >= 30   # Celery's warm shutdown
    assert service["KillMode"] in ("mixed", "control-group")
    assert service["EnvironmentFile"].startswith("/")
    assert service["User"] and service["User"] != "root"
    assert unit["Install"]["WantedBy"] == "multi-user.target"
    assert "network-online.target" in unit["Unit"]["After"]
    for line in service.get("Environment", "").split():
        name = line.split("=", 1)[0]
        assert name in SETTINGS, f"Environment={line}: {name} is not a setting (beluga.settings._ENV)"


def test_systemd_unit_passes_systemd_analyze(tmp_path: Path) -> None:
    """The unit as systemd reads it (an instance of the template; the program replaced by one that exists).
    scripts/test.sh installs Debian's systemd (for systemd-analyze) when missing; in CI its absence fails."""
    if shutil.which("systemd-analyze") is None:
        if os.environ.get("CI"):
            raise RuntimeError("systemd-analyze is required in CI (scripts/test.sh installs Debian's systemd)")
        pytest.skip("systemd-analyze is not installed (scripts/test.sh installs it as root)")
    target = tmp_path / "beluga-worker@1.service"
    target.write_text(UNIT.read_text().replace("/srv/myapp/.venv/bin/celery", shutil.which("true") or "/bin/true"))
    out = subprocess.run(["systemd-analyze", "verify", str(target)], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr


def test_environment_file_names_only_settings_and_loads() -> None:
    names = [line.split("=", 1)[0] for line in ENV_FILE.read_text().splitlines()
             if line.strip() and not line.startswith("#")]
    assert names and all(name in SETTINGS for name in names), names
    assert set(_read_env_file(ENV_FILE)) == {key for key, var in _ENV.items() if var in names}
    settings = Settings.load(environ={}, file=ENV_FILE)
    assert settings.imports == ("myapp.workflows",)
    assert settings.append_replicas == 1
    assert settings.broker_url.startswith("rediss://") and "ssl_cert_reqs=required" in settings.broker_url
    assert "CHANGE-ME" not in repr(settings)          # the password is masked wherever settings are shown


# --- Kubernetes -----------------------------------------------------------------------------------------

def _manifests() -> list[tuple[str, dict[str, Any]]]:
    docs = []
    for path in sorted((DEPLOY / "k8s").glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if doc is not None:
                docs.append((path.name, doc))
    return docs


MANIFESTS = _manifests()


def _by_kind(kind: str) -> dict[str, dict[str, Any]]:
    return {doc["metadata"]["name"]: doc for _, doc in MANIFESTS if doc["kind"] == kind}


def _workloads() -> dict[str, dict[str, Any]]:
    return {**_by_kind("Deployment"), **_by_kind("StatefulSet")}


def _container(name: str) -> dict[str, Any]:
    containers = _workloads()[name]["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1, f"{name}: one container expected"
    return containers[0]


def test_manifests_parse_and_have_the_expected_objects() -> None:
    for file, doc in MANIFESTS:
        assert {"apiVersion", "kind", "metadata"} <= set(doc), f"{file}: {doc.get('kind')} lacks a field"
        assert doc["metadata"].get("name"), f"{file}: a {doc['kind']} without a name"
    found = {(doc["kind"], doc["metadata"]["name"]) for _, doc in MANIFESTS}
    assert found == {("ConfigMap", "beluga-config"), ("Secret", "beluga-secrets"),
                     ("Service", "beluga-redis"), ("StatefulSet", "beluga-redis"),
                     ("Deployment", "beluga-worker"), ("Deployment", "beluga-console"), ("Service", "beluga-console"),
                     ("Deployment", "beluga-flower"), ("Service", "beluga-flower")}, found
    api = {"ConfigMap": "v1", "Secret": "v1", "Service": "v1", "Deployment": "apps/v1", "StatefulSet": "apps/v1"}
    for _, doc in MANIFESTS:
        assert doc["apiVersion"] == api[doc["kind"]], doc["metadata"]["name"]


def test_workloads_select_their_own_pods() -> None:
    for name, workload in _workloads().items():
        spec = workload["spec"]
        selector = spec["selector"]["matchLabels"]
        labels = spec["template"]["metadata"]["labels"]
        assert selector.items() <= labels.items(), f"{name}: its selector {selector} misses its pods {labels}"
        container = _container(name)
        assert container["image"] and container["name"]
        ports = [p["name"] for p in container.get("ports", [])]
        assert len(ports) == len(set(ports)), f"{name}: port names repeat"
        for probe in ("livenessProbe", "readinessProbe"):
            port = container.get(probe, {}).get("httpGet", {}).get("port")
            assert port is None or port in ports, f"{name}: {probe} names port {port!r}, not one of {ports}"


def test_services_reach_a_workload_port() -> None:
    workloads = _workloads()
    for name, service in _by_kind("Service").items():
        selector = service["spec"]["selector"]
        targets = [w for w, doc in workloads.items()
                   if selector.items() <= doc["spec"]["template"]["metadata"]["labels"].items()]
        assert len(targets) == 1, f"Service {name} selects {targets}"
        ports = {p["name"] for p in _container(targets[0]).get("ports", [])} | \
                {p["containerPort"] for p in _container(targets[0]).get("ports", [])}
        for port in service["spec"]["ports"]:
            assert port["targetPort"] in ports, \
                f"Service {name}: targetPort {port['targetPort']} is not a port of {targets[0]}"


def test_env_names_are_settings_and_references_exist() -> None:
    secrets = {name: set(doc.get("stringData", {})) | set(doc.get("data", {}))
               for name, doc in _by_kind("Secret").items()}
    config_maps = {name: set(doc.get("data", {})) for name, doc in _by_kind("ConfigMap").items()}
    for names in config_maps.values():
        unknown = [n for n in names if n.startswith("BELUGA_") and n not in SETTINGS]
        assert not unknown, f"ConfigMap keys {unknown} are not settings (beluga.settings._ENV)"
    for name in _workloads():
        container = _container(name)
        for var in container.get("env", []):
            if var["name"].startswith("BELUGA_"):
                assert var["name"] in SETTINGS, f"{name}: {var['name']} is not a setting"
            ref = var.get("valueFrom", {})
            if "secretKeyRef" in ref:
                secret = ref["secretKeyRef"]
                assert secret["key"] in secrets.get(secret["name"], set()), f"{name}: no secret {secret}"
        for source in container.get("envFrom", []):
            if "configMapRef" in source:
                assert source["configMapRef"]["name"] in config_maps
            if "secretRef" in source:
                assert source["secretRef"]["name"] in secrets


def _env(name: str) -> set[str]:
    container = _container(name)
    names = {var["name"] for var in container.get("env", [])}
    for source in container.get("envFrom", []):
        if "configMapRef" in source:
            names |= set(_by_kind("ConfigMap")[source["configMapRef"]["name"]]["data"])
    return names


def test_worker_runs_celery_with_the_fleet_settings_and_a_warm_shutdown() -> None:
    worker = _workloads()["beluga-worker"]
    container = _container("beluga-worker")
    assert container["command"][:4] == ["celery", "-A", "beluga", "worker"]
    assert {"BELUGA_BROKER_URL", "BELUGA_REDIS_URL", "BELUGA_IMPORTS"} <= _env("beluga-worker")
    assert worker["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] >= 30
    assert container["livenessProbe"]["httpGet"]["path"] == "/metrics"
    assert {"BELUGA_METRICS_PORT"} <= _env("beluga-worker")


def test_console_runs_a_beluga_command_line_the_parser_accepts() -> None:
    container = _container("beluga-console")
    command = container["command"]
    assert command[0] == "beluga"
    args = build().parse_args(command[1:])
    assert (args.command, args.executor, args.host) == ("console", "celery", "0.0.0.0")
    assert container["readinessProbe"]["httpGet"]["path"] == "/healthz"
    assert "BELUGA_CONSOLE_TOKEN" in _env("beluga-console")


def test_flower_asks_for_a_password() -> None:
    container = _container("beluga-flower")
    assert container["command"][:4] == ["celery", "-A", "beluga", "flower"]
    assert "FLOWER_BASIC_AUTH" in _env("beluga-flower")


def test_redis_persists_and_refuses_to_evict() -> None:
    redis = _workloads()["beluga-redis"]
    args = _container("beluga-redis")["args"]
    options = dict(zip(args[1::2], args[2::2], strict=True))
    assert args[0] == "redis-server"
    assert options["--appendonly"] == "yes"
    assert options["--maxmemory-policy"] == "noeviction"
    assert options.get("--maxmemory"), \
        "a maxmemory below the container's limit, so that Redis refuses writes before the OOM killer comes"
    mounts = {m["name"]: m["mountPath"] for m in _container("beluga-redis")["volumeMounts"]}
    assert mounts.get("data") == "/data"
    assert [t["metadata"]["name"] for t in redis["spec"]["volumeClaimTemplates"]] == ["data"]
