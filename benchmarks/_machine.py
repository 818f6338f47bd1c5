"""What every benchmark prints about the run it measured: the machine, the load, the code."""

from __future__ import annotations

import os
import platform
import subprocess

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def code_revision() -> str:
    """The commit measured, and whether the working tree differed from it (others may be editing)."""
    try:
        head = subprocess.run(["git", "-C", ROOT, "rev-parse", "--short", "HEAD"], capture_output=True,
                              text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", ROOT, "status", "--porcelain", "--", "beluga"],
                               capture_output=True, text=True).stdout.strip()
        return head + (" + uncommitted changes in beluga/" if dirty else "")
    except Exception:
        return "?"


def versions(*names: str) -> str:
    from importlib.metadata import version

    out = []
    for n in names:
        try:
            out.append(f"{n} {version(n)}")
        except Exception:
            out.append(f"{n} ?")
    return " | ".join(out)


def describe(*parts: str) -> str:
    """`python X | <parts> | N CPUs (model) | load avg a b c | code <rev>`."""
    cpu = "?"
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name"))
    except Exception:
        pass
    load = os.getloadavg()
    return " | ".join([f"python {platform.python_version()}", *parts, f"{os.cpu_count()} CPUs ({cpu})",
                       f"load avg {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}", f"code {code_revision()}"])
