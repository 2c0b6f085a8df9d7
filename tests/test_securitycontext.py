"""The one definition of the restricted security contexts passes the Pod Security `restricted` check."""

from plinth.governance.podsecurity import restricted
from plinth.securitycontext import restricted_container, restricted_pod


def test_a_pod_with_the_restricted_contexts_passes_restricted():
    pod = {"securityContext": restricted_pod(1000, 1000, 1000, fs_group_on_root_mismatch=True),
           "containers": [{"name": "app", "image": "app:1", "securityContext": restricted_container()}]}
    assert restricted(pod) == []


def test_a_standalone_container_passes_without_its_pods_context():
    pod = {"containers": [{"name": "app", "image": "app:1",
                           "securityContext": restricted_container(read_only_root=True, standalone=True)}]}
    assert restricted(pod) == []
    pod["containers"][0]["securityContext"] = restricted_container()
    assert restricted(pod) != []


def test_only_the_ids_given_are_set():
    assert restricted_pod() == {"runAsNonRoot": True, "seccompProfile": {"type": "RuntimeDefault"}}
    assert restricted_pod(65534, 65534) == {"runAsNonRoot": True, "runAsUser": 65534, "runAsGroup": 65534,
                                            "seccompProfile": {"type": "RuntimeDefault"}}
