"""Benchmark the real engine against the offline plan on the same stack, in one run.

Starts the local control plane (etcd + kube-apiserver from tests/e2e/toolchain),
writes the e2e stack over the minimal blueprint, and times, best of --repeat:
  * `pulumi preview` of a fresh stack (real CLI, language host and Kubernetes provider),
  * `pulumi preview` after `pulumi up` (the drift check CI runs),
  * `plinth plan --stack e2e` (offline engine), both including interpreter start.
Prints wall seconds and the ratio. Needs the full toolchain, including
pulumi-resource-kubernetes (see tests/e2e/toolchain/README.md).

Usage: python bench/engine_vs_plan.py [--repeat 3]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT / "tests" / "e2e"), str(ROOT / "tests")]  # the acceptance tier's harness and its support

from binaries import toolchain_bin  # noqa: E402
from controlplane import LocalControlPlane  # noqa: E402
from pulumi_cli import PulumiProject  # noqa: E402

PLINTH = str(Path(sys.executable).parent / "plinth")


def best_of(repeat: int, step) -> float:
    best = float("inf")
    for _ in range(repeat):
        started = time.perf_counter()
        step()
        best = min(best, time.perf_counter() - started)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    bin_dir = toolchain_bin()
    if bin_dir is None:
        sys.exit("no toolchain: run tests/e2e/toolchain/build.sh first")
    if not (bin_dir / "pulumi-resource-kubernetes").is_file():
        sys.exit("no pulumi-resource-kubernetes in the toolchain (see tests/e2e/toolchain/README.md)")

    with tempfile.TemporaryDirectory() as tmp, LocalControlPlane(bin_dir, Path(tmp) / "cp") as plane:
        project = PulumiProject(bin_dir, Path(tmp) / "pulumi", plane.kubeconfig_path)
        project.write_stack(project.overrides())
        project("stack", "init", project.stack)
        project.set_secrets()  # the services' stack secrets (test values), as the acceptance tier sets them
        rows = [("pulumi preview (fresh stack)", best_of(args.repeat, lambda: project("preview")))]
        up = project("up", "--yes", "--skip-preview")
        rows.append(("pulumi up (create)", up.seconds))
        rows.append(("pulumi preview (deployed)", best_of(args.repeat, lambda: project("preview"))))
        offline = best_of(args.repeat, lambda: subprocess.run(
            [PLINTH, "plan", "--stack", project.stack], cwd=project.dir, check=True, stdout=subprocess.DEVNULL))
        rows.append(("plinth plan --stack e2e", offline))
        project("destroy", "--yes", "--skip-preview")

    print(f"{'step':<32}{'wall s':>9}{'x plinth plan':>15}")
    for label, seconds in rows:
        print(f"{label:<32}{seconds:>9.2f}{seconds / offline:>15.1f}")


if __name__ == "__main__":
    main()
