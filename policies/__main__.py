"""Plinth's policy pack for the real engine: every policy of plinth.governance.policies as a stack policy.

Stack policies (not resource policies) because several policies relate resources to each other (a
team namespace and its NetworkPolicies) or read the platform ledger; each runs over exactly what
`plinth check` gives it, so both runners report the same policy names for the same resources.
Levels: each policy's own, overridden per stack by Pulumi's `--policy-pack-config` file.
"""

from collections.abc import Mapping

from pulumi_policy import EnforcementLevel, PolicyPack, StackValidationPolicy
from pulumi_policy.proxy import _DictProxy, _ListProxy

from plinth.governance.policies import POLICIES, Platform, Policy, Subject


def plain(value):
    """The inputs behind the SDK's read-only proxies as plain dicts and lists, as `plinth check` sees them
    (a value unknown during preview stays the engine's unknown sentinel string, which no policy matches)."""
    if isinstance(value, (_DictProxy, _ListProxy)):
        value = value["__target"]
    if isinstance(value, Mapping):
        return {key: plain(item) for key, item in value.items()}
    if isinstance(value, list):
        return [plain(item) for item in value]
    return value


def validator(policy: Policy):
    def validate(args, report_violation) -> None:
        subjects = [Subject(r.resource_type, r.name, plain(r.props),
                            upstream=r.parent is not None and r.parent.resource_type.startswith("kubernetes:yaml"))
                    for r in args.resources]
        for violation in policy.run(subjects, Platform.of(subjects)):
            where = f"{violation.subject}: " if violation.subject else ""
            report_violation(f"{where}{violation.message} (fix: {policy.remediation})")
    return validate


PolicyPack(
    name="plinth",
    policies=[StackValidationPolicy(name=p.name, description=p.description, validate=validator(p),
                                    enforcement_level=EnforcementLevel(p.level)) for p in POLICIES],
)
