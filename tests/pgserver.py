"""A real PostgreSQL server for the tests (Debian's package: initdb, pg_ctl, postgres, psql), run as the account
`postgres` when the tests run as root (the server refuses root)."""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
from pathlib import Path

import pytest

from support import free_port

TOOLS = ("initdb", "pg_ctl", "postgres", "psql")


def postgres_account() -> pwd.struct_passwd | None:
    """The account to run the server as (None: the current one); without PostgreSQL's commands, or as root
    without a `postgres` account, the test skips."""
    for tool in TOOLS:
        if shutil.which(tool) is None:
            pytest.skip(f"no {tool} on PATH: the test runs a real PostgreSQL server "
                        "(Debian: apt-get install postgresql; /usr/lib/postgresql/<version>/bin on PATH)")
    if os.geteuid() != 0:
        return None
    try:
        return pwd.getpwnam("postgres")
    except KeyError:
        pytest.skip("running as root, the test runs PostgreSQL as the account `postgres`, and there is none")


class Postgres:
    """A PostgreSQL server in `data` listening on a socket in `run` only, run as `user` (the server refuses
    root: as root, the `postgres` account), with the environment `env` (its archive and restore commands
    inherit it)."""

    def __init__(self, data: Path, run: Path, user: pwd.struct_passwd | None, env: dict[str, str]):
        self.data, self.run, self.user, self.env = data, run, user, env
        self.port = free_port()
        self.log = run / f"{data.name}.log"

    def command(self, *args, timeout: int = 120, check: bool = True) -> subprocess.CompletedProcess:
        as_user = {"user": self.user.pw_uid, "group": self.user.pw_gid, "extra_groups": []} if self.user else {}
        done = subprocess.run([str(a) for a in args], capture_output=True, text=True, timeout=timeout,
                              cwd=self.run, env=self.env, **as_user)
        if check and done.returncode != 0:
            pytest.fail(f"{' '.join(map(str, args))} exited {done.returncode}:\n{done.stdout[-2000:]}\n"
                        f"{done.stderr[-3000:]}\n{self.log_tail()}")
        return done

    def sql(self, statement: str) -> str:
        return self.command("psql", "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-h", self.run, "-p",
                            self.port, "-U", "postgres", "-d", "postgres", "-c", statement).stdout.strip()

    def start(self) -> None:
        self.command("pg_ctl", "-D", self.data, "-l", self.log, "-o", f"-p {self.port}", "-w", "-t", "60",
                     "start")

    def stop(self) -> None:
        if (self.data / "postmaster.pid").exists():
            self.command("pg_ctl", "-D", self.data, "-m", "fast", "-w", "stop", check=False)

    def log_tail(self) -> str:
        return self.log.read_text(errors="replace")[-3000:] if self.log.exists() else ""
