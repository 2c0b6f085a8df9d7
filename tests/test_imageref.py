"""ImageRef is the one parser of image references (catalog, mirror, modules, rules, policies)."""

import pytest

from plinth.catalog import ImageRef


@pytest.mark.parametrize("ref, registry, repository, tag, digest", [
    ("quay.io/cilium/cilium:v1.18.2@sha256:abc", "quay.io", "cilium/cilium", "v1.18.2", "sha256:abc"),
    ("registry.local:5000/team/model", "registry.local:5000", "team/model", "", None),
    ("redis:7.4", "docker.io", "library/redis", "7.4", None),
    ("bitnami/redis@sha256:abc", "docker.io", "bitnami/redis", "", "sha256:abc"),
])
def test_parse_splits_registry_repository_tag_and_digest(ref, registry, repository, tag, digest):
    assert ImageRef.parse(ref) == ImageRef(registry, repository, tag, digest)


def test_name_is_the_last_path_segment():
    assert ImageRef.parse("nvcr.io/nvidia/k8s/dcgm-exporter:4.2.3").name == "dcgm-exporter"
    assert ImageRef.parse("redis:7.4").name == "redis"


@pytest.mark.parametrize("ref, pinned", [
    ("registry.local:5000/team/model", False),  # the port is not a tag
    ("registry.local:5000/team/model:1.0", True),
    ("team/model@sha256:abc", True),
    ("model", False),
])
def test_pinned_means_a_tag_or_a_digest(ref, pinned):
    assert ImageRef.parse(ref).pinned is pinned
