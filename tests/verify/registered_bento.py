"""A real Bento serving a registered version, for tests/test_registry_server.py: served on CPU by `bentoml serve
registered_bento:Registered` from the serving environment (PLINTH_SERVING_PYTHON). It reads the version's files
where the fetch-model init step put them, $PLINTH_MODEL_DIR, once at start, as a Bento loading its model would."""

from __future__ import annotations

import os
from pathlib import Path

import bentoml


@bentoml.service(workers=1)
class Registered:
    def __init__(self) -> None:
        self.served = Path(os.environ["PLINTH_MODEL_DIR"], "scorer", "1", "model.txt").read_text()

    @bentoml.api
    def weights(self) -> dict:
        """What the server loaded."""
        return {"weights": self.served}
