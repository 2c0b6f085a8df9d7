"""Where the acceptance tier's binaries are: the cache tests/e2e/toolchain/build.sh fills."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

BUILD_SCRIPT = Path(__file__).resolve().parent / "toolchain" / "build.sh"


def toolchain_bin() -> Path | None:
    """$PLINTH_TOOLCHAIN_BIN, else the cached bin dir if build.sh completed it, else None (never builds)."""
    if os.environ.get("PLINTH_TOOLCHAIN_BIN"):
        return Path(os.environ["PLINTH_TOOLCHAIN_BIN"])
    # The cache key includes the Python SDK version of $PYTHON: ask with this interpreter.
    result = subprocess.run([str(BUILD_SCRIPT), "--print-bin-dir"], capture_output=True, text=True,
                            env={**os.environ, "PYTHON": sys.executable})
    return Path(result.stdout.split()[-1]) if result.returncode == 0 and result.stdout.strip() else None
