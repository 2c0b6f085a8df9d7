"""Storage (Longhorn) under Pulumi's mock runtime: replicas by environment, and what `pulumi destroy` keeps."""

from __future__ import annotations

from support import ROOT, SERVICES, platform, platform_spec, values
from plinth.engine.offline import plan
from plinth.spec.load import load_spec
from plinth.targets import BUCKET_PURPOSES


def test_longhorn_replicas_follow_the_environment_unless_the_spec_says(dev, prod):
    assert values(dev, "longhorn")["persistence"]["defaultClassReplicaCount"] == 1
    assert values(prod, "longhorn")["defaultSettings"]["defaultReplicaCount"] == 3
    explicit = platform("prod", storage={"longhorn": {"replicaCount": 2}})
    assert values(explicit, "longhorn")["persistence"]["defaultClassReplicaCount"] == 2


def retained(result) -> set[tuple[str, str]]:
    return {(r.type.rsplit(":", 1)[-1], r.name) for r in result.resources if r.retained}


def test_destroy_keeps_longhorn_and_its_volumes_unless_the_spec_lets_them_go(dev, prod):
    for kept in (dev, prod):
        assert values(kept, "longhorn")["defaultSettings"]["deletingConfirmationFlag"] is False
        assert values(kept, "longhorn")["persistence"]["reclaimPolicy"] == "Retain"
    throwaway = platform("dev", storage={"longhorn": {"enabled": True}, "deleteDataOnDestroy": True})
    assert values(throwaway, "longhorn")["defaultSettings"]["deletingConfirmationFlag"] is True
    assert values(throwaway, "longhorn")["persistence"]["reclaimPolicy"] == "Delete"
    # Kept: destroy leaves the release, its namespace and its objects; the stack forgets them.
    kept = retained(plan(platform_spec(SERVICES), "test"))
    assert {("Release", "longhorn"), ("Namespace", "longhorn-namespace")} <= kept
    assert {name for _, name in kept} == {name for _, name in kept if name.startswith("longhorn")}
    assert retained(plan(platform_spec(SERVICES, storage={"deleteDataOnDestroy": True}), "test")) == set()


def test_destroy_keeps_the_cloud_buckets_with_their_settings_unless_the_spec_lets_them_go():
    for blueprint, kinds in (("eks-gpu", {"Bucket", "BucketServerSideEncryptionConfiguration", "BucketVersioning",
                                           "BucketPublicAccessBlock", "BucketOwnershipControls"}),
                             ("gke-gpu", {"Bucket"})):
        spec = load_spec(ROOT / "blueprints" / f"{blueprint}.yaml")
        result = plan(spec, "test")
        assert retained(result) == {(kind, f"cluster-{purpose}") for kind in kinds
                                    for purpose in BUCKET_PURPOSES}
        assert {r.inputs["forceDestroy"] for r in result.resources if r.type.endswith("Bucket")} == {False}
        let_go = plan(spec.model_copy(update={"storage": spec.storage.model_copy(
            update={"delete_data_on_destroy": True})}), "test")
        assert retained(let_go) == set()
        assert {r.inputs["forceDestroy"] for r in let_go.resources if r.type.endswith("Bucket")} == {True}
