"""Plinth's policies: pure functions over resources as the engine sees them, with two runners.

A policy sees `Subject`s (Pulumi type token, name, input properties in the engine's form). The
same functions run in `pulumi preview --policy-pack policies` (policies/__main__.py, over what
the real engine is about to deploy) and in `plinth check` (plinth/governance/check.py, over the
offline plan). Platform facts a policy needs (environment, air-gap mirror, levels) come from the
platform ledger ConfigMap the program declares (modules/governance), so both runners read them
from the resources themselves and never from a second description.

This module: the policies in the order they run, and the runners' entry points. Each policy and its check
live in the module of its theme; core.py holds what every policy works on.
"""

from __future__ import annotations

from plinth.governance.policies.airgap import AIRGAP_MIRROR_ONLY_POLICY
from plinth.governance.policies.availability import PROD_HIGH_AVAILABILITY_POLICY
from plinth.governance.policies.backups import BACKUPS_REQUIRED_POLICY
from plinth.governance.policies.baseline import (
    NO_WILDCARD_RBAC_POLICY,
    OWNERSHIP_LABELS_POLICY,
    PINNED_IMAGES_POLICY,
    SECRETS_FROM_STACK_CONFIG_POLICY,
    TEAM_NAMESPACE_ISOLATION_POLICY,
)
from plinth.governance.policies.cloud import CLOUD_PRIVATE_AND_ENCRYPTED_POLICY, WORKLOAD_IDENTITY_SCOPED_POLICY
from plinth.governance.policies.core import DISABLED, LEVELS, Platform, Policy, Subject, Violation
from plinth.governance.policies.models import (
    GPU_WORKLOADS_POLICY,
    SERVED_MODEL_LINEAGE_POLICY,
    SERVED_MODEL_RELIABILITY_POLICY,
)
from plinth.governance.policies.references import REFERENCES_RESOLVE_POLICY
from plinth.governance.policies.rendered import (
    CILIUM_POLICY_ENFORCEMENT_POLICY,
    GRAFANA_NOT_ANONYMOUS_POLICY,
    HOST_ACCESS_ALLOWLIST_POLICY,
    NO_EXTERNAL_SERVICES_POLICY,
    POD_SECURITY_POLICY,
    VAULT_NOT_DEV_POLICY,
)
from plinth.governance.policies.routes import TEAM_ROUTES_OWN_PATHS_POLICY, UI_SIGN_ON_POLICY

POLICIES: tuple[Policy, ...] = (
    NO_WILDCARD_RBAC_POLICY,
    TEAM_NAMESPACE_ISOLATION_POLICY,
    OWNERSHIP_LABELS_POLICY,
    AIRGAP_MIRROR_ONLY_POLICY,
    PINNED_IMAGES_POLICY,
    PROD_HIGH_AVAILABILITY_POLICY,
    BACKUPS_REQUIRED_POLICY,
    SECRETS_FROM_STACK_CONFIG_POLICY,
    NO_EXTERNAL_SERVICES_POLICY,
    POD_SECURITY_POLICY,
    HOST_ACCESS_ALLOWLIST_POLICY,
    VAULT_NOT_DEV_POLICY,
    CILIUM_POLICY_ENFORCEMENT_POLICY,
    GRAFANA_NOT_ANONYMOUS_POLICY,
    GPU_WORKLOADS_POLICY,
    SERVED_MODEL_RELIABILITY_POLICY,
    SERVED_MODEL_LINEAGE_POLICY,
    CLOUD_PRIVATE_AND_ENCRYPTED_POLICY,
    WORKLOAD_IDENTITY_SCOPED_POLICY,
    REFERENCES_RESOLVE_POLICY,
    TEAM_ROUTES_OWN_PATHS_POLICY,
    UI_SIGN_ON_POLICY,
)
POLICY_NAMES = tuple(p.name for p in POLICIES)


def evaluate(subjects: list[Subject], levels: dict[str, str] | None = None
             ) -> list[tuple[Policy, str, list[Violation]]]:
    """Every policy at its effective level (`levels`: a stack's overrides), with its violations."""
    platform = Platform.of(subjects)
    out = []
    for policy in POLICIES:
        level = (levels or {}).get(policy.name, policy.level)
        out.append((policy, level, [] if level == DISABLED else policy.run(subjects, platform)))
    return out


def read_levels(config: dict, where: str) -> dict[str, str]:
    """Levels from a policy configuration in Pulumi's `--policy-pack-config` form:
    {"<policy>": "advisory"} or {"<policy>": {"enforcementLevel": "advisory"}}; "all" sets every policy.
    Raises ValueError naming the bad key."""
    levels: dict[str, str] = {}
    # "all" first, so a named policy's own level wins whatever the order in the file.
    for name, value in sorted(config.items(), key=lambda item: item[0] != "all"):
        level = value.get("enforcementLevel") if isinstance(value, dict) else value
        if name != "all" and name not in POLICY_NAMES:
            raise ValueError(f"{where}: unknown policy {name!r} (policies: {', '.join(POLICY_NAMES)})")
        if level not in LEVELS:
            raise ValueError(f"{where}: {name}: level {level!r} is not one of {', '.join(LEVELS)}")
        levels.update(dict.fromkeys(POLICY_NAMES if name == "all" else (name,), level))
    return levels
