"""Running the real `beluga` command in a subprocess, as an operator would."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent.parent
CONSOLE_SCRIPT = Path(sys.executable).parent / "beluga"


@dataclass
class Result:
    code: int
    out: str
    err: str

    def json(self) -> Any:
        return json.loads(self.out)

    def one_error_line(self) -> str:
        """The command failed with exactly one line on stderr and no traceback; returns that line."""
        assert self.code != 0, (self.out, self.err)
        lines = self.err.splitlines()
        assert len(lines) == 1, self.err
        assert "Traceback" not in self.err and lines[0].startswith("beluga: error: "), self.err
        return lines[0]


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("BELUGA_")}
    env.update(extra)
    return env


def beluga(*args: str, env: dict[str, str] | None = None, timeout: float = 60, script: bool = False,
           cwd: Path = ROOT) -> Result:
    cmd = [str(CONSOLE_SCRIPT)] if script else [sys.executable, "-m", "beluga"]
    proc = subprocess.run([*cmd, *args], cwd=cwd, env=env if env is not None else clean_env(),
                          capture_output=True, text=True, timeout=timeout)
    return Result(proc.returncode, proc.stdout, proc.stderr)
