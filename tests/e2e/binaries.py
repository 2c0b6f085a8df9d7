"""Where the acceptance tier's binaries are: the cache tests/e2e/toolchain/build.sh fills."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

BUILD_SCRIPT = Path(__file__).resolve().parent / "toolchain" / "build.sh"


def toolchain_tool(name: str) -> str | None:
    """A toolchain binary (`helm`, `weed`, `promtool`, `alertmanager`, `amtool`, `mockoidc`...): $PLINTH_<NAME>, else
    the toolchain's (built from its Go module by build.sh), else None. While a build is in progress and the tool is
    not there yet, waits for it: a tool is usable as soon as it is built, before the rest of the toolchain."""
    variable = f"PLINTH_{name.upper().replace('-', '_')}"
    if os.environ.get(variable):
        return os.environ[variable]
    if os.environ.get("PLINTH_TOOLCHAIN_BIN"):
        path = Path(os.environ["PLINTH_TOOLCHAIN_BIN"]) / name
        return str(path) if path.is_file() else None
    return _wait_for(name, lambda bin_dir, complete: str(bin_dir / name) if (bin_dir / name).is_file() else None,
                     until_built=False)


def toolchain_crds() -> list[Path]:
    """CRDs that controllers register at start (Cilium's), fetched by build.sh: the test API server has
    no nodes for those controllers, so the tiers install these in their stead. Fetched before anything is compiled:
    a build in progress has them soon."""
    if os.environ.get("PLINTH_TOOLCHAIN_BIN"):
        return sorted(Path(os.environ["PLINTH_TOOLCHAIN_BIN"]).parent.glob("crds/*/*.yaml"))

    def fetched(bin_dir: Path, complete: bool) -> list[Path] | None:
        done = sorted(marker.parent for marker in bin_dir.parent.glob("crds/*/.complete-*"))
        if done:
            return [path for directory in done for path in sorted(directory.glob("*.yaml"))]
        return [] if complete else None
    return _wait_for("the CRDs", fetched, until_built=False) or []


def toolchain_kwok_stages() -> Path | None:
    """KWOK's stage file (how simulated nodes and pods change state), fetched by build.sh; None if absent."""
    bin_dir = toolchain_bin()
    stages = sorted(bin_dir.parent.glob("kwok-stages/*.yaml")) if bin_dir else []
    return stages[-1] if stages else None


BUILDING = 3
"""build.sh --print-bin-dir's exit code while a build is making the Kubernetes tools' key (it prints the bin dir)."""
WAIT_SECONDS = int(os.environ.get("PLINTH_TOOLCHAIN_WAIT", "3600"))
"""How long a test waits for a build in progress (CI builds the toolchain while the other tests run)."""
POLL_SECONDS = 10


def _build_script(flag: str) -> subprocess.CompletedProcess:
    # The cache key includes the Python SDK version of $PYTHON: ask with this interpreter.
    return subprocess.run([str(BUILD_SCRIPT), flag], capture_output=True, text=True,
                          env={**os.environ, "PYTHON": sys.executable})


def _wait_for(what: str, find, until_built: bool):
    """Ask build.sh for the bin dir until `find(bin_dir, complete)` finds something (not None): while the Kubernetes
    tools' key is being made, and, unless `until_built`, while a build goes on after it (the tools with keys of
    their own). At most $PLINTH_TOOLCHAIN_WAIT seconds, saying so every minute; None if nothing was found."""
    started = time.monotonic()
    while True:
        result = _build_script("--print-bin-dir")
        complete = result.returncode == 0
        bin_dir = Path(result.stdout.split()[-1]) if result.returncode in (0, BUILDING) and result.stdout.strip() \
            else None
        found = find(bin_dir, complete) if bin_dir else None
        waited = time.monotonic() - started
        more_to_come = result.returncode == BUILDING or (
            complete and not until_built and _build_script("--building").returncode == 0)
        if found is not None or not more_to_come or waited >= WAIT_SECONDS:
            return found
        if int(waited) % 60 < POLL_SECONDS:  # pytest captures output: say it where the person watching sees it
            print(f"[tests] waiting for {what} from the toolchain build in progress ({int(waited)}s of at most "
                  f"{WAIT_SECONDS}s; PLINTH_TOOLCHAIN_WAIT)", file=sys.__stderr__, flush=True)
        time.sleep(POLL_SECONDS)


def toolchain_bin() -> Path | None:
    """$PLINTH_TOOLCHAIN_BIN, else the cached bin dir once build.sh completed the Kubernetes tools' key (the engine,
    the API server and its controllers, KWOK, helm, the provider), else None (never builds). While a build is making
    that key, waits for it."""
    if os.environ.get("PLINTH_TOOLCHAIN_BIN"):
        return Path(os.environ["PLINTH_TOOLCHAIN_BIN"])
    return _wait_for("the engine and the API server", lambda bin_dir, complete: bin_dir if complete else None,
                     until_built=True)
