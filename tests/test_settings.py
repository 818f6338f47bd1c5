"""Settings come from defaults, a config file, Django settings and the environment, later ones winning."""

from __future__ import annotations

import os
import subprocess
import sys
import types
from pathlib import Path

import pytest

from beluga.settings import Settings

ROOT = Path(__file__).resolve().parent.parent


def test_defaults() -> None:
    s = Settings.load(environ={}, file="/nonexistent")
    assert s.broker_url == "redis://localhost:6379/0" and s.history_url == s.broker_url
    assert s.imports == ()      # no default: a worker is told which modules hold its code


def test_file_then_environment(tmp_path: Path) -> None:
    cfg = tmp_path / "beluga.env"
    cfg.write_text("# comment\nBELUGA_BROKER_URL=redis://file:6379/1\nBELUGA_IMPORTS=a, b\nBELUGA_LEASE_SECONDS=4\n")
    s = Settings.load(environ={"BELUGA_BROKER_URL": "redis://env:6379/2"}, file=cfg)
    assert s.broker_url == "redis://env:6379/2" and s.imports == ("a", "b") and s.lease_seconds == 4.0


def test_amqp_broker_needs_a_redis_url() -> None:
    s = Settings.load(environ={"BELUGA_BROKER_URL": "amqp://guest@localhost//"}, file="/nonexistent")
    assert not s.broker_is_redis
    with pytest.raises(ValueError, match="BELUGA_REDIS_URL"):
        _ = s.history_url


def test_django_settings_are_read_when_django_is_configured(monkeypatch: pytest.MonkeyPatch) -> None:
    conf = types.SimpleNamespace(configured=True, CELERY_BROKER_URL="redis://django:6379/3",
                                 BELUGA_IMPORTS="shop.workflows")
    django = types.ModuleType("django")
    django_conf = types.ModuleType("django.conf")
    django_conf.settings = conf  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "django", django)
    monkeypatch.setitem(sys.modules, "django.conf", django_conf)
    s = Settings.load(environ={}, file="/nonexistent")
    assert s.broker_url == "redis://django:6379/3" and s.imports == ("shop.workflows",)
    assert Settings.load(environ={"BELUGA_IMPORTS": "env.mod"}, file="/nonexistent").imports == ("env.mod",)


def test_append_replicas(tmp_path: Path) -> None:
    assert (Settings().append_replicas, Settings().append_replicas_timeout) == (0, 1.0)
    cfg = tmp_path / "beluga.env"
    cfg.write_text("BELUGA_APPEND_REPLICAS=1\n")
    s = Settings.load(environ={"BELUGA_APPEND_REPLICAS_TIMEOUT": "0.5"}, file=cfg)
    assert (s.append_replicas, s.append_replicas_timeout) == (1, 0.5)


def test_metrics_port_and_console_token() -> None:
    s = Settings.load({"BELUGA_METRICS_PORT": "9108", "BELUGA_CONSOLE_TOKEN": "hush"}, file="/nonexistent")
    assert s.metrics_port == 9108 and s.console_token == "hush"
    assert "hush" not in repr(s) and "console_token='***'" in repr(s)
    blank = Settings.load({"BELUGA_METRICS_PORT": "", "BELUGA_CONSOLE_TOKEN": ""}, file="/nonexistent")
    assert blank.metrics_port is None and blank.console_token is None


def _load_in(cwd: Path, tmp_path: Path, settings_module: str) -> subprocess.CompletedProcess:
    """Settings.load() in a fresh process started from `cwd`, the way `celery` and `beluga` start: the
    script's own directory, not the current one, is first on sys.path."""
    script = tmp_path / "load_settings.py"
    script.write_text("from beluga.settings import Settings\ns = Settings.load()\nprint(s.imports, s.redis_url)\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("BELUGA_", "DJANGO_"))}
    env.update(DJANGO_SETTINGS_MODULE=settings_module, SHOP_REDIS_URL="redis://shop:6379/5",
               PYTHONPATH=str(ROOT))
    return subprocess.run([sys.executable, str(script)], cwd=cwd, env=env, capture_output=True, text=True, timeout=60)


def test_a_django_project_is_read_from_the_directory_it_is_started_in(tmp_path: Path) -> None:
    done = _load_in(ROOT / "examples" / "django_project", tmp_path, "shop.settings")
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["('shop.workflows',)", "redis://shop:6379/5"]


def test_a_settings_module_that_cannot_be_imported_is_an_error_that_names_it(tmp_path: Path) -> None:
    done = _load_in(ROOT / "examples" / "django_project", tmp_path, "shop.setings")
    assert done.returncode != 0
    assert "DJANGO_SETTINGS_MODULE=shop.setings cannot be imported" in done.stderr
    assert "ModuleNotFoundError" in done.stderr and "PYTHONPATH" in done.stderr
