"""A throwaway PostgreSQL cluster: initdb + pg_ctl as the `postgres` user, a free port.

Used by the centre's benchmark and its tests (tests/central_service/postgres.py turns a
missing PostgreSQL into a skip, or a failure in CI). initdb refuses to run as root, so
the server runs as `postgres` in a temporary directory it owns, the way Debian's own
packaging runs it.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import psycopg

from bench.broker import _free_port as free_port


def _newest_bin() -> Path:
    """Debian's server binaries, newest version first (15 on Debian 12, 17 on 13)."""
    found = sorted(
        Path("/usr/lib/postgresql").glob("*/bin/initdb"),
        key=lambda p: int(p.parent.parent.name) if p.parent.parent.name.isdigit() else 0,
    )
    return found[-1].parent if found else Path("/usr/lib/postgresql/15/bin")


BIN = _newest_bin()


class PostgresMissing(RuntimeError):
    pass


def _as_postgres(*args: str) -> list[str]:
    if os.geteuid() == 0:
        return ["runuser", "-u", "postgres", "--", *args]
    return list(args)


class PostgresCluster:
    def __init__(self) -> None:
        if not (BIN / "initdb").exists():
            raise PostgresMissing("PostgreSQL not found: apt-get install postgresql")
        self.port = free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="central-pg-"))
        if os.geteuid() == 0:
            shutil.chown(self.dir, "postgres")
        self._databases = 0

    def _run(self, *args: str) -> None:
        done = subprocess.run(
            _as_postgres(*args), capture_output=True, text=True, timeout=120, check=False
        )
        if done.returncode != 0:
            raise RuntimeError(f"{args[0]} failed: {done.stderr.strip() or done.stdout.strip()}")

    def start(self) -> PostgresCluster:
        data = self.dir / "data"
        if not data.exists():
            self._run(str(BIN / "initdb"), "-D", str(data), "-A", "trust", "-U", "postgres")
        self._run(
            str(BIN / "pg_ctl"),
            "-D",
            str(data),
            "-l",
            str(self.dir / "log"),
            "-w",
            "-o",
            f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1 -c fsync=on",
            "start",
        )
        return self

    def stop(self, mode: str = "fast") -> None:
        self._run(str(BIN / "pg_ctl"), "-D", str(self.dir / "data"), "-m", mode, "-w", "stop")

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def new_database(self) -> str:
        """A fresh, empty database in this cluster; its URL."""
        self._databases += 1
        name = f"t{self._databases}"
        with psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def destroy(self) -> None:
        with contextlib.suppress(RuntimeError):
            self.stop("immediate")
        shutil.rmtree(self.dir, ignore_errors=True)
