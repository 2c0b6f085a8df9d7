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
    the toolchain's (built from its Go module by build.sh), else None."""
    variable = f"PLINTH_{name.upper().replace('-', '_')}"
    if os.environ.get(variable):
        return os.environ[variable]
    bin_dir = toolchain_bin()
    return str(bin_dir / name) if bin_dir and (bin_dir / name).is_file() else None


def toolchain_crds() -> list[Path]:
    """CRDs that controllers register at start (Cilium's), fetched by build.sh: the test API server has
    no nodes for those controllers, so the tiers install these in their stead."""
    bin_dir = toolchain_bin()
    return sorted(bin_dir.parent.glob("crds/*/*.yaml")) if bin_dir else []


def toolchain_kwok_stages() -> Path | None:
    """KWOK's stage file (how simulated nodes and pods change state), fetched by build.sh; None if absent."""
    bin_dir = toolchain_bin()
    stages = sorted(bin_dir.parent.glob("kwok-stages/*.yaml")) if bin_dir else []
    return stages[-1] if stages else None


BUILDING = 3
"""build.sh --print-bin-dir's exit code while a build is in progress."""
WAIT_SECONDS = int(os.environ.get("PLINTH_TOOLCHAIN_WAIT", "3600"))
"""How long a test waits for a build in progress (CI builds the toolchain while the other tests run)."""
POLL_SECONDS = 10


def toolchain_bin() -> Path | None:
    """$PLINTH_TOOLCHAIN_BIN, else the cached bin dir if build.sh completed it, else None (never builds).
    While a build is in progress, waits for it (at most $PLINTH_TOOLCHAIN_WAIT seconds, saying so every minute)."""
    if os.environ.get("PLINTH_TOOLCHAIN_BIN"):
        return Path(os.environ["PLINTH_TOOLCHAIN_BIN"])
    started = time.monotonic()
    while True:
        # The cache key includes the Python SDK version of $PYTHON: ask with this interpreter.
        result = subprocess.run([str(BUILD_SCRIPT), "--print-bin-dir"], capture_output=True, text=True,
                                env={**os.environ, "PYTHON": sys.executable})
        waited = time.monotonic() - started
        if result.returncode != BUILDING or waited >= WAIT_SECONDS:
            break
        if int(waited) % 60 < POLL_SECONDS:  # pytest captures output: say it where the person watching sees it
            print(f"[tests] waiting for the toolchain build in progress ({int(waited)}s of at most "
                  f"{WAIT_SECONDS}s; PLINTH_TOOLCHAIN_WAIT)", file=sys.__stderr__, flush=True)
        time.sleep(POLL_SECONDS)
    return Path(result.stdout.split()[-1]) if result.returncode == 0 and result.stdout.strip() else None
