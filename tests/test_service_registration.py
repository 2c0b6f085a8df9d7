"""A service is one place: its class and one `SERVICES` entry. A throw-away service that declares a need, a
rule, a stack secret, an image and a cloud identity is checked, asked for its secret, mirrored, given its
identity by the target and built by the central code without any central file knowing it."""

from __future__ import annotations

from pathlib import Path

import pulumi
import pulumi_kubernetes as k8s
import pytest
from ruamel.yaml import YAML

from support import MINIMAL, ROOT
from plinth import program
from plinth.context import PlatformContext, StackSecret, resource_name
from plinth.engine.offline import plan
from plinth.mirror import mirror_list
from plinth.objects import children
from plinth.plan import SECRET
from plinth.service import Need, PlatformService
from plinth.spec.errors import Violation
from plinth.spec.load import stack_keys
from plinth.spec.models import PlatformSpec
from plinth.spec.rules import check_rules
from plinth.spec.yamltree import merge
from plinth.targets import Identity
from plinth.stackconfig import check_stack

THROWAWAY_TEAM = {"name": "throwaway", "groups": {"mlEngineer": ["throwaway-devs"]}}
TOKEN = StackSecret("throwawayToken", "token of the throw-away service")
IMAGE = "registry.example.com/throwaway/server:1.2.3"


class Throwaway(PlatformService):
    """Enabled by a team named `throwaway`; needs the Gateway outside dev; refuses prod."""

    secrets = (TOKEN,)

    @classmethod
    def enabled(cls, spec) -> bool:
        return any(team.name == "throwaway" for team in spec.teams)

    @classmethod
    def block(cls, spec) -> str:
        return spec.metadata.name

    @classmethod
    def needs(cls, spec) -> tuple[Need, ...]:
        return (Need("gateway", ("teams",), "the throw-away UI is served by the platform Gateway", "throwaway",
                     "remove the team throwaway"),) if cls.enabled(spec) and spec.metadata.environment != "dev" else ()

    @classmethod
    def rules(cls, spec):
        if cls.enabled(spec) and spec.metadata.environment == "prod":
            yield Violation(("metadata", "environment"), "the throw-away service is not for prod",
                            "throwaway-not-prod", "use dev")

    @classmethod
    def images(cls, block, ctx: PlatformContext) -> tuple[str, ...]:
        return (IMAGE,)

    @classmethod
    def identities(cls, spec) -> tuple[Identity, ...]:
        return (Identity("throwaway", "default", "throwaway", "bucket-read:models/throwaway"),)

    def __init__(self, name: str, block: str, ctx: PlatformContext, opts: pulumi.ResourceOptions | None = None):
        super().__init__("plinth:test:Throwaway", name, None, opts)
        token = ctx.secrets.throwaway_token
        assert token is not None, "the program hands the service its declared secret"
        k8s.core.v1.Secret(resource_name(name, "token"), metadata=ctx.metadata("throwaway", name, namespace="default"),
                           string_data={"token": token}, opts=children(self, ctx, opts))
        k8s.core.v1.ServiceAccount(resource_name(name, "account"), opts=children(self, ctx, opts), metadata=ctx.metadata(
            "throwaway", name, namespace="default", annotations=ctx.target.annotations("default", "throwaway")))
        self.register_outputs({})


@pytest.fixture
def registered(monkeypatch):
    monkeypatch.setattr(program, "SERVICES", (*program.SERVICES, ("throwaway", Throwaway)))


def spec(environment: str = "dev", blueprint: str = MINIMAL) -> PlatformSpec:
    doc = merge(YAML(typ="safe").load(blueprint), {"metadata": {"environment": environment}})
    doc["teams"] = [*doc["teams"], THROWAWAY_TEAM]
    return PlatformSpec.model_validate(doc)


def test_its_need_and_its_rule_are_checked(registered):
    found = {(v.loc, v.rule, v.message, v.fix) for v in check_rules(spec("prod"))}
    assert (("teams",), "throwaway-needs-gateway", "the throw-away UI is served by the platform Gateway, which is off",
            "enable network.cilium with gatewayApi: true, or remove the team throwaway") in found
    assert (("metadata", "environment"), "throwaway-not-prod", "the throw-away service is not for prod",
            "use dev") in found


def test_its_secret_is_a_stack_key_needed_and_handed_to_it(registered, tmp_path, monkeypatch):
    assert stack_keys()["throwawayToken"] == "secret: token of the throw-away service"
    assert TOKEN in program.needed_secrets(spec())
    # `plinth validate --stack` names the command that sets it.
    (tmp_path / "blueprints").mkdir()
    (tmp_path / "stacks").mkdir()
    doc = YAML(typ="safe").load(MINIMAL)
    doc["teams"].append(THROWAWAY_TEAM)
    YAML().dump(doc, tmp_path / "blueprints" / "base.yaml")
    (tmp_path / "stacks" / "Pulumi.dev.yaml").write_text("config:\n  plinth:blueprint: blueprints/base.yaml\n")
    _, commands = check_stack(Path(tmp_path), "dev")
    assert commands == ["pulumi config set --secret -s dev plinth:throwawayToken VALUE   "
                        "# token of the throw-away service"]
    # The plan builds it with its secret (offline: the secret placeholder; the real engine: the stack's).
    planned = {r.name: r for r in plan(spec(), "test").resources}
    assert planned["throwaway-token"].inputs["stringData"] == SECRET


def test_its_image_is_mirrored(registered):
    assert IMAGE in {image.source for image in mirror_list(spec()).images}
    assert IMAGE not in {image.source for image in mirror_list(spec()).images if image.service != "throwaway"}


def test_its_cloud_identity_is_created_by_the_target_and_bound_to_its_account(registered):
    eks = spec("dev", (ROOT / "blueprints" / "eks-gpu.yaml").read_text())
    planned = {(r.type, r.name): r.inputs for r in plan(eks, "test").resources}
    assert planned["aws:iam/role:Role", "cluster-throwaway"]["name"] == "eks-gpu-dev-throwaway"
    assert "arn:aws:s3:::eks-gpu-dev-models/throwaway/*" in planned["aws:iam/rolePolicy:RolePolicy",
                                                                   "cluster-throwaway"]["policy"]
    account = planned["kubernetes:core/v1:ServiceAccount", "throwaway-account"]["metadata"]["annotations"]
    assert account["eks.amazonaws.com/role-arn"].endswith(":role/eks-gpu-dev-throwaway")
