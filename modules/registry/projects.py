"""The configure stage of Harbor: one private project per team, the team's groups as members, and with
identity.oidc.clients.harbor Harbor's OIDC authentication.

Runs once Harbor is up, as its admin (password: the stack secret plinth:harborAdminPassword,
the same one the platform stage gives Harbor). Groups are the identity provider's (Harbor's
OIDC authentication, set here with clients.harbor, or LDAP, configured in Harbor), matched by name.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import pulumi
import pulumiverse_harbor as harbor

from plinth.catalog import CHARTS
from plinth.context import PlatformContext, StackSecret, resource_name
from plinth.modules.registry import ADMIN_PASSWORD
from plinth.service import PlatformService
from plinth.spec.errors import Violation
from plinth.spec.models import Oidc, PlatformSpec

# Least privilege per team role: engineers push and pull, data scientists pull, viewers
# see artifacts and their scan results only.
MEMBER_ROLES = {"ml_engineer": "developer", "data_scientist": "guest", "viewer": "limitedguest"}
OIDC_CLIENT_SECRET = StackSecret("harborOidcClientSecret", "client secret of Harbor's client at the identity "
                                 "provider (identity.oidc.clients.harbor)")


@dataclass(frozen=True)
class HarborProjectsArgs:
    url: str
    """Where the stage reaches Harbor's API."""
    group_type: str
    """How Harbor knows groups: oidc or ldap."""
    teams: tuple
    """The spec's teams (name and groups)."""
    oidc: Oidc | None = None
    """identity.oidc, when Harbor signs people on through it (clients.harbor set); None: Harbor's own users."""
    admin_group: str | None = None
    """rbac.platformAdminGroup: Harbor's administrators when it signs people on."""


def harbor_url(spec: PlatformSpec) -> str:
    block = spec.registry.harbor
    if block.hostname:
        return f"https://{block.hostname}"
    chart = CHARTS["harbor"]
    return f"http://{chart.name}.{chart.namespace}.svc"


def _signs_on(spec: PlatformSpec) -> bool:
    harbor, oidc = spec.registry.harbor, spec.identity.oidc
    return bool(harbor.enabled and harbor.hostname and oidc and oidc.clients.harbor)


def harbor_sign_on_rules(spec: PlatformSpec) -> Iterator[Violation]:
    """Harbor's client needs Harbor at a host name people reach, and OIDC groups."""
    oidc, harbor = spec.identity.oidc, spec.registry.harbor
    if not (oidc and oidc.clients.harbor):
        return
    at = ("identity", "oidc", "clients", "harbor")
    if not (harbor.enabled and harbor.hostname):
        yield Violation(at, "Harbor signs people on through the provider at its own host name, and "
                        "registry.harbor is not enabled with a hostname", "harbor-sign-on",
                        "enable registry.harbor and set registry.harbor.hostname, or remove clients.harbor")
    if harbor.group_type != "oidc":
        yield Violation(("registry", "harbor", "groupType"), f"groupType {harbor.group_type!r}, while Harbor signs "
                        "people on through the provider (identity.oidc.clients.harbor)", "harbor-sign-on-groups",
                        "set groupType: oidc, or remove identity.oidc.clients.harbor")


class HarborProjects(PlatformService):
    """Harbor's side of every team (plinth:registry:HarborProjects)."""

    # Harbor's API as its admin; with sign-on, Harbor's client at the provider.
    secrets = (ADMIN_PASSWORD, OIDC_CLIENT_SECRET)

    @classmethod
    def enabled(cls, spec: PlatformSpec) -> bool:
        return spec.registry.harbor.enabled

    @classmethod
    def block(cls, spec: PlatformSpec) -> HarborProjectsArgs:
        signs_on = _signs_on(spec)
        return HarborProjectsArgs(harbor_url(spec), spec.registry.harbor.group_type, spec.teams,
                                  spec.identity.oidc if signs_on else None,
                                  spec.rbac.platform_admin_group if signs_on else None)

    @classmethod
    def needed_secrets(cls, spec: PlatformSpec) -> tuple[StackSecret, ...]:
        if not cls.enabled(spec):
            return ()
        return (ADMIN_PASSWORD, *((OIDC_CLIENT_SECRET,) if _signs_on(spec) else ()))

    @classmethod
    def rules(cls, spec: PlatformSpec) -> Iterator[Violation]:
        return harbor_sign_on_rules(spec)

    def __init__(self, name: str, args: HarborProjectsArgs, ctx: PlatformContext,
                 opts: pulumi.ResourceOptions | None = None):
        super().__init__("plinth:registry:HarborProjects", name, None, opts)
        password = ctx.secrets.harbor_admin_password
        if password is None:
            raise ValueError("the Harbor configure stage needs the stack secret plinth:harborAdminPassword")
        provider = harbor.Provider(name, url=args.url, username="admin", password=pulumi.Output.secret(password),
                                   opts=pulumi.ResourceOptions(parent=self))
        child = pulumi.ResourceOptions(parent=self, provider=provider)
        members = child
        if args.oidc:
            secret = ctx.secrets.harbor_oidc_client_secret
            if secret is None:
                raise ValueError("Harbor's sign-on needs the stack secret plinth:harborOidcClientSecret")
            oidc = args.oidc
            # Harbor switches only while it has no users but its admin (who keeps signing in with the password).
            auth = harbor.ConfigAuth(
                resource_name(name, "auth"), auth_mode="oidc_auth", oidc_name="Single sign-on",
                oidc_endpoint=oidc.issuer, oidc_client_id=oidc.clients.harbor,
                oidc_client_secret=pulumi.Output.secret(secret), oidc_scope=",".join(oidc.scopes),
                oidc_user_claim=oidc.username_claim, oidc_auto_onboard=True, oidc_groups_claim=oidc.groups_claim,
                oidc_admin_group=args.admin_group, oidc_verify_cert=True, opts=child)
            # Harbor takes groups of type oidc once it authenticates through OIDC.
            members = pulumi.ResourceOptions.merge(child, pulumi.ResourceOptions(depends_on=[auth]))
        for team in args.teams:
            project = harbor.Project(resource_name(name, team.name), name=team.name, public=False,
                                     vulnerability_scanning=True, force_destroy=False, opts=child)
            for role, harbor_role in MEMBER_ROLES.items():
                for group in getattr(team.groups, role):
                    harbor.ProjectMemberGroup(
                        resource_name(name, team.name, group), project_id=project.id, group_name=group,
                        type=args.group_type, role=harbor_role, opts=members)
        self.register_outputs({})
