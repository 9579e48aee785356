"""The agent as a cabinet has it: installed by scripts/install-pi.sh into a scratch prefix.

The footprint is measured on this install, not on the development venv, because what is
importable changes what the agent costs: structlog imports `rich` and `greenlet` whenever
they are installed, and the development venv has them for the centre's tools. The script
runs with `--no-apt` (this host's Debian packages stand in for the Pi's) and `--extras ""`
(pyscard is a compile, and the simulated cabinet never imports it); everything else is
what a Pi gets: a venv under opt/cabinet-agent with the agent's dependencies only.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from bench.rig import ROOT

INSTALL_SCRIPT = ROOT / "scripts" / "install-pi.sh"


class TargetInstallError(RuntimeError):
    pass


def install_agent(prefix: Path) -> Path:
    """Installs the agent under `prefix`; returns its `cabinet-agent` program."""
    if os.geteuid() != 0:
        raise TargetInstallError(
            "the footprint benchmark installs the agent with scripts/install-pi.sh, "
            "which runs as root (it creates the service user in its prefix)"
        )
    done = subprocess.run(
        ["bash", str(INSTALL_SCRIPT), "--prefix", str(prefix), "--no-apt", "--extras", ""],
        capture_output=True,
        text=True,
        timeout=600,
    )
    if done.returncode != 0:
        raise TargetInstallError(f"install-pi.sh exited {done.returncode}: {done.stderr[-2000:]}")
    program = prefix / "opt" / "cabinet-agent" / "venv" / "bin" / "cabinet-agent"
    if not program.exists():
        raise TargetInstallError(f"install-pi.sh did not install {program}")
    return program
