"""The configure stage of Harbor: one private project per team, the team's groups as members.

Runs once Harbor is up, as its admin (password: the stack secret plinth:harborAdminPassword,
the same one the platform stage gives Harbor). Groups are the identity provider's (Harbor's
OIDC or LDAP authentication, configured in Harbor), matched by name.
"""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumiverse_harbor as harbor

from plinth.catalog import CHARTS
from plinth.context import PlatformContext, resource_name
from plinth.modules.registry import ADMIN_PASSWORD
from plinth.service import PlatformService
from plinth.spec.models import PlatformSpec

# Least privilege per team role: engineers push and pull, data scientists pull, viewers
# see artifacts and their scan results only.
MEMBER_ROLES = {"ml_engineer": "developer", "data_scientist": "guest", "viewer": "limitedguest"}


@dataclass(frozen=True)
class HarborProjectsArgs:
    url: str
    """Where the stage reaches Harbor's API."""
    group_type: str
    """How Harbor knows groups: oidc or ldap."""
    teams: tuple
    """The spec's teams (name and groups)."""


def harbor_url(spec: PlatformSpec) -> str:
    block = spec.registry.harbor
    if block.hostname:
        return f"https://{block.hostname}"
    chart = CHARTS["harbor"]
    return f"http://{chart.name}.{chart.namespace}.svc"


class HarborProjects(PlatformService):
    """Harbor's side of every team (plinth:registry:HarborProjects)."""

    # Harbor's API as its admin.
    secrets = (ADMIN_PASSWORD,)

    @classmethod
    def enabled(cls, spec: PlatformSpec) -> bool:
        return spec.registry.harbor.enabled

    @classmethod
    def block(cls, spec: PlatformSpec) -> HarborProjectsArgs:
        return HarborProjectsArgs(harbor_url(spec), spec.registry.harbor.group_type, spec.teams)

    def __init__(self, name: str, args: HarborProjectsArgs, ctx: PlatformContext,
                 opts: pulumi.ResourceOptions | None = None):
        super().__init__("plinth:registry:HarborProjects", name, None, opts)
        password = ctx.secrets.harbor_admin_password
        if password is None:
            raise ValueError("the Harbor configure stage needs the stack secret plinth:harborAdminPassword")
        provider = harbor.Provider(name, url=args.url, username="admin", password=pulumi.Output.secret(password),
                                   opts=pulumi.ResourceOptions(parent=self))
        child = pulumi.ResourceOptions(parent=self, provider=provider)
        for team in args.teams:
            project = harbor.Project(resource_name(name, team.name), name=team.name, public=False,
                                     vulnerability_scanning=True, force_destroy=False, opts=child)
            for role, harbor_role in MEMBER_ROLES.items():
                for group in getattr(team.groups, role):
                    harbor.ProjectMemberGroup(
                        resource_name(name, team.name, group), project_id=project.id, group_name=group,
                        type=args.group_type, role=harbor_role, opts=child)
        self.register_outputs({})
