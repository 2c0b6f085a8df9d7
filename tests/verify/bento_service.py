"""A real BentoML service for tests/test_verify.py, served on CPU by `bentoml serve bento_service:Ranker` from the
serving environment (PLINTH_SERVING_PYTHON). While the file $PLINTH_TEST_FAIL_FLAG exists, `rank` fails (HTTP 500)."""

from __future__ import annotations

import os

import bentoml


@bentoml.service(workers=1)
class Ranker:
    @bentoml.api
    def rank(self, scores: list[float], top: int = 1) -> list[float]:
        flag = os.environ.get("PLINTH_TEST_FAIL_FLAG")
        if flag and os.path.exists(flag):
            raise RuntimeError("failing on purpose (flag file present)")
        return sorted(scores, reverse=True)[:top]

    @bentoml.api
    def summarize(self, scores: list[float]) -> dict:
        """A second API: verify calls only the first of /docs.json (BentoML lists them by name)."""
        return {"n": len(scores)}
