"""A stand-in for the kubelet, for Jobs only: every Job the API server holds is marked complete.

The test API server has no nodes, so a Job never runs and Helm waits forever on a
hook Job (Longhorn's pre-delete `longhorn-uninstall`, cert-manager's post-install
`startupapicheck`). Helm cannot be told to skip hooks on uninstall through the Pulumi
provider, and real teardown needs them, so the tier keeps the hooks and plays the
node's part instead: Helm's hook protocol (create, watch to completion, delete by
policy) runs for real; only what the Job's container would do is out of reach.
"""

from __future__ import annotations

import datetime
import threading

from kubeapi import ApiError, KubeApi


class JobCompleter:
    """Background thread: marks every Job complete (SuccessCriteriaMet, then Complete) as it appears."""

    def __init__(self, kube: KubeApi, interval: float = 0.3):
        self.kube, self.interval = kube, interval
        self.completed: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="job-completer", daemon=True)

    def __enter__(self) -> JobCompleter:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                jobs = self.kube.request("GET", "/apis/batch/v1/jobs")["items"]
            except (ApiError, OSError):
                continue
            for job in jobs:
                if not _finished(job):
                    self._complete(job)

    def _complete(self, job: dict) -> None:
        meta = job["metadata"]
        now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
        conditions = [{"type": kind, "status": "True", "reason": "CompletionsReached", "lastTransitionTime": now,
                       "lastProbeTime": now, "message": "Reached expected number of succeeded pods"}
                      for kind in ("SuccessCriteriaMet", "Complete")]
        status = {"startTime": job.get("status", {}).get("startTime") or now, "completionTime": now,
                  "succeeded": job["spec"].get("completions") or 1, "active": 0, "conditions": conditions}
        path = f"/apis/batch/v1/namespaces/{meta['namespace']}/jobs/{meta['name']}/status"
        try:
            self.kube.request("PATCH", path, {"status": status}, content_type="application/merge-patch+json")
            self.completed.append(f"{meta['namespace']}/{meta['name']}")
        except (ApiError, OSError):
            pass  # deleted meanwhile, or the job controller got there first: next round


def _finished(job: dict) -> bool:
    return any(c["type"] in ("Complete", "Failed") and c["status"] == "True"
               for c in job.get("status", {}).get("conditions", []))
