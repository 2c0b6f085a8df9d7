"""The platform ledger: one ConfigMap recording what produced the running platform.

`plinth-system/plinth-ledger` holds the spec's hash, the files it came from (with hashes and the
last commit touching them), the catalog versions, and the platform facts the policies read
(environment, air-gap mirror and perimeter). It changes only when those change: nothing
per-run (no timestamps) and nothing on every other object, so a drift preview stays clean.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

import pulumi
import pulumi_kubernetes as k8s

from plinth.catalog import CHARTS, IMAGES, PLATFORM_NAMESPACES
from plinth.context import PlatformContext, resource_name
from plinth.objects import children, namespace, platform_ingress
from plinth.service import PlatformService
from plinth.spec.models import PlatformSpec, perimeter_hosts
from plinth.vocabulary import LEDGER_NAME, LEDGER_NAMESPACE


@dataclass(frozen=True)
class LedgerArgs:
    spec_sha256: str
    """sha256 of the validated spec (canonical JSON): equal specs, equal hashes, whatever the files."""
    mirror: str | None
    perimeter: tuple[str, ...] = ()
    """In air-gap mode, the hosts inside the perimeter (plinth.spec.models.perimeter_hosts)."""
    lineage_required: bool = False
    """serving.lineageRequired: policy served-model-lineage applies (in prod)."""
    sign_on: bool = False
    """identity.oidc is set: policy ui-sign-on wants Grafana's route behind its sign-on."""


def spec_hash(spec: PlatformSpec) -> str:
    canonical = json.dumps(spec.model_dump(mode="json", by_alias=True), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


class Ledger(PlatformService):
    """plinth:governance:Ledger."""

    @classmethod
    def enabled(cls, spec: PlatformSpec) -> bool:
        return True

    @classmethod
    def block(cls, spec) -> LedgerArgs:
        mirror = spec.airgap.mirror.registry if spec.airgap.enabled and spec.airgap.mirror else None
        return LedgerArgs(spec_hash(spec), mirror, perimeter_hosts(spec) if mirror else (),
                          spec.serving.lineage_required, spec.identity.oidc is not None)

    def __init__(self, name: str, args: LedgerArgs, ctx: PlatformContext,
                 opts: pulumi.ResourceOptions | None = None):
        super().__init__("plinth:governance:Ledger", name, None, opts)
        child = children(self, ctx, opts)
        ns = namespace(name, LEDGER_NAMESPACE, name, ctx, child)
        in_ns = pulumi.ResourceOptions.merge(child, pulumi.ResourceOptions(depends_on=[ns]))
        platform_ingress(name, LEDGER_NAMESPACE, name, (), ctx, in_ns)
        facts: dict[str, Any] = {"platform": ctx.platform, "environment": ctx.environment, "mirror": args.mirror}
        if args.perimeter:
            facts["perimeter"] = list(args.perimeter)
        if args.lineage_required:
            facts["servedModelLineage"] = True
        if args.sign_on:
            facts["signOn"] = True
        catalog = {"charts": {key: f"{chart.name} {chart.version}" for key, chart in sorted(CHARTS.items())},
                   "images": dict(sorted(IMAGES.items()))}
        provenance = ctx.provenance.as_dict() if ctx.provenance else {"files": [], "commit": None}
        self.config_map = k8s.core.v1.ConfigMap(
            resource_name(name),
            metadata=ctx.metadata(LEDGER_NAME, name, namespace=LEDGER_NAMESPACE),
            data={
                "platform.json": _json(facts),
                "spec.json": _json({"sha256": args.spec_sha256, **provenance}),
                "catalog.json": _json(catalog),
            },
            opts=in_ns,
        )
        self.register_outputs({})


def _json(value) -> str:
    return json.dumps(value, indent=2, sort_keys=True) + "\n"


assert PLATFORM_NAMESPACES["ledger"] == LEDGER_NAMESPACE
