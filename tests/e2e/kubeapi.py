"""A minimal Kubernetes REST client for the acceptance tier: discovery, server-side apply, get, delete.

Standard library only (the tier must not depend on a client that hides what
the API server says); authenticates with the admin client certificate of the
local control plane.
"""

from __future__ import annotations

import json
import ssl
import time
import urllib.error
import urllib.request
from dataclasses import dataclass

FIELD_MANAGER = "plinth-e2e"


class ApiError(Exception):
    def __init__(self, status: int, body: str, what: str):
        self.status, self.body = status, body
        super().__init__(f"{what}: HTTP {status}: {body[:500]}")


@dataclass(frozen=True)
class ApiResource:
    group_version: str
    plural: str
    namespaced: bool


def api_base(group_version: str) -> str:
    return "/api/v1" if group_version == "v1" else f"/apis/{group_version}"


class KubeApi:
    def __init__(self, server: str, tls: ssl.SSLContext, token: str | None = None):
        """`token`: a bearer token (e.g. an identity provider's ID token) instead of `tls`'s client certificate."""
        self.server = server.rstrip("/")
        self._ssl = tls
        self._auth = {"Authorization": f"Bearer {token}"} if token else {}
        self._resources: dict[tuple[str, str], ApiResource] = {}

    def request(self, method: str, path: str, body: dict | None = None,
                content_type: str = "application/json") -> dict:
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(self.server + path, data=data, method=method,
                                     headers={"Content-Type": content_type, "Accept": "application/json",
                                              **self._auth})
        try:
            with urllib.request.urlopen(req, context=self._ssl, timeout=30) as resp:
                return json.loads(resp.read() or b"{}")
        except urllib.error.HTTPError as exc:
            raise ApiError(exc.code, exc.read().decode(errors="replace"), f"{method} {path}") from None

    def resource(self, api_version: str, kind: str) -> ApiResource:
        """Plural name and scope of a kind, from the server's discovery documents."""
        if (api_version, kind) not in self._resources:
            for item in self.request("GET", api_base(api_version))["resources"]:
                if "/" not in item["name"]:
                    self._resources[(api_version, item["kind"])] = ApiResource(
                        api_version, item["name"], item["namespaced"])
        return self._resources[(api_version, kind)]

    def path(self, obj: dict) -> str:
        res = self.resource(obj["apiVersion"], obj["kind"])
        namespace = obj["metadata"].get("namespace")
        scope = f"/namespaces/{namespace}" if res.namespaced and namespace else ""
        return f"{api_base(res.group_version)}{scope}/{res.plural}/{obj['metadata']['name']}"

    def apply(self, obj: dict) -> dict:
        """Server-side apply (what the Pulumi Kubernetes provider does by default)."""
        return self.request("PATCH", self.path(obj) + f"?fieldManager={FIELD_MANAGER}&force=true", obj,
                            content_type="application/apply-patch+yaml")

    def patch(self, obj: dict, change: dict, manager: str = "manual-edit") -> dict:
        """A JSON merge patch under another field manager: what a person's `kubectl edit` does."""
        return self.request("PATCH", self.path(obj) + f"?fieldManager={manager}", change,
                            content_type="application/merge-patch+json")

    def get(self, obj: dict) -> dict | None:
        try:
            return self.request("GET", self.path(obj))
        except ApiError as exc:
            if exc.status == 404:
                return None
            raise

    def delete(self, obj: dict) -> None:
        try:
            self.request("DELETE", self.path(obj), {"propagationPolicy": "Background"})
        except ApiError as exc:
            if exc.status != 404:
                raise

    def finalize_namespace(self, name: str) -> None:
        """Finish a namespace's deletion now instead of waiting for the namespace controller."""
        ns = self.get({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})
        if ns is None:
            return
        ns["spec"]["finalizers"] = []
        self.request("PUT", f"/api/v1/namespaces/{name}/finalize", ns)

    def wait(self, obj: dict, ready, timeout: float = 60) -> dict | None:
        """Poll until ready(live object or None) holds; the last state seen."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                live = self.get(obj)
            except ApiError as exc:  # discovery of a group that just went away
                if exc.status != 404:
                    raise
                live = None
            if ready(live) or time.monotonic() > deadline:
                return live
            time.sleep(0.2)

    def list_labelled(self, api_version: str, kind: str, selector: str) -> list[dict]:
        res = self.resource(api_version, kind)
        return self.request("GET", f"{api_base(res.group_version)}/{res.plural}?labelSelector={selector}")["items"]


def established(crd: dict | None) -> bool:
    """A CRD the API server serves (its status may still lack conditions right after creation)."""
    conditions = ((crd or {}).get("status") or {}).get("conditions") or []
    return any(c["type"] == "Established" and c["status"] == "True" for c in conditions)
