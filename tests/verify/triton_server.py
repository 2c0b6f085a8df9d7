"""A real Triton Inference Server (nvidia-pytriton's `tritonserver`, CPU) for tests/test_verify.py.

Run with the serving environment's Python (PLINTH_SERVING_PYTHON):
`triton_server.py PORT ADD [--restrict-statistics] [--fail-flag FILE] [--workspace DIR]`. It serves two models on
127.0.0.1:PORT (HTTP only): `scorer` (FP32 [-1] + ADD, batched, max_batch_size 8) and `preprocess` (INT64 [-1]
identity, not batched), prints READY and serves until SIGTERM. While FILE exists, `scorer` fails every request.
With --restrict-statistics, GET /v2/models/stats needs PyTriton's access token (PyTriton's default); without, it
is open as in a stock `tritonserver`.
"""

from __future__ import annotations

import argparse
import os
import sysconfig

# The Python backend's stub links libpython3.x by name: without this it may load the system's copy instead of
# this interpreter's (symptom: "'_thread.RLock' object has no attribute '_recursion_count'" at model load).
# tritonserver and the stubs it starts inherit the variable.
os.environ["LD_LIBRARY_PATH"] = os.pathsep.join(
    p for p in (sysconfig.get_config_var("LIBDIR"), os.environ.get("LD_LIBRARY_PATH")) if p)

import numpy as np  # noqa: E402
from pytriton.decorators import batch  # noqa: E402
from pytriton.model_config import ModelConfig, Tensor  # noqa: E402
from pytriton.triton import (DEFAULT_PROTECTED_ENDPOINTS, Triton, TritonConfig,  # noqa: E402
                             TritonSecurityConfig)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("port", type=int)
    parser.add_argument("add", type=float)
    parser.add_argument("--restrict-statistics", action="store_true")
    parser.add_argument("--fail-flag")
    parser.add_argument("--workspace", help="PyTriton's workspace (default: a new one under ~/.cache/pytriton)")
    args = parser.parse_args()

    @batch
    def scorer(INPUT):
        if args.fail_flag and os.path.exists(args.fail_flag):
            raise RuntimeError("failing on purpose (flag file present)")
        return {"OUTPUT": (INPUT + args.add).astype(np.float32)}

    def preprocess(requests):
        return [{"IDS": request["IDS"]} for request in requests]

    protected = [e for e in DEFAULT_PROTECTED_ENDPOINTS if args.restrict_statistics or e != "statistics"]
    config = TritonConfig(http_address="127.0.0.1", http_port=args.port, allow_grpc=False, allow_metrics=False)
    with Triton(config=config, workspace=args.workspace,
                security_config=TritonSecurityConfig(restricted_endpoints=protected)) as triton:
        triton.bind(model_name="scorer", infer_func=scorer,
                    inputs=[Tensor(name="INPUT", dtype=np.float32, shape=(-1,))],
                    outputs=[Tensor(name="OUTPUT", dtype=np.float32, shape=(-1,))],
                    config=ModelConfig(max_batch_size=8))
        triton.bind(model_name="preprocess", infer_func=preprocess,
                    inputs=[Tensor(name="IDS", dtype=np.int64, shape=(-1,))],
                    outputs=[Tensor(name="IDS", dtype=np.int64, shape=(-1,))],
                    config=ModelConfig(batching=False))
        print("READY", flush=True)
        triton.serve()


if __name__ == "__main__":
    main()
