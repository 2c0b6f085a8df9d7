"""The live tier sees what stops a real deployment: each case fails `pulumi up` with the object and the reason.

One small live cluster (live.py: two simulated CPU nodes, no GPU) and one small staging stack (tenancy and
monitoring, so models can be served) deployed first; each case is one change to the stack the spec's rules
cannot see, applied by an `up` with a short await timeout (testing.awaitTimeoutSeconds), which must fail naming
the object, with the API server's or the scheduler's reason. The three models' cases share one `up`. Last, the stack goes back to its base and `up` passes again.
"""

from __future__ import annotations

import pytest

from kubeapi import KubeApi
from live import create_nodes, live_cluster, pod_ready, pods, simulated_nodes, unready
from pulumi_cli import PulumiProject
from support import CHARTS_DIR
from plinth.spec.load import load_spec

pytestmark = pytest.mark.e2e

AWAIT_SECONDS = 45
"""Long enough for a healthy workload on the simulated nodes, short enough for a failing case to end soon."""


def model(name: str, replicas: int = 1, gpu: int = 0, team: str = "fraud") -> dict:
    return {"name": name, "team": team, "runtime": "triton", "modelRepository": "s3://fraud-models/triton",
            "repositoryCidrs": ["10.30.0.0/16"], "gpu": gpu, "stable": {"version": "v1", "replicas": replicas}}


def base(kubeconfig: str, **extra) -> dict:
    return {
        "metadata": {"environment": "staging"},
        "target": {"type": "existing", "kubeconfig": kubeconfig},
        "testing": {"awaitTimeoutSeconds": AWAIT_SECONDS, "nodes": {"cpuNodes": 2, "gpuNodes": 0}},
        "charts": {"source": str(CHARTS_DIR)},
        "monitoring": {"enabled": True},
        **extra,
    }


@pytest.fixture(scope="module")
def small(live_toolchain, toolchain, kubernetes_provider, tmp_path_factory):
    """The small cluster and the base stack on it, deployed (`up` must pass: the cases' baseline). Not destroyed:
    the cluster and the stack's state go with the fixture's directories."""
    if not (CHARTS_DIR / "INDEX.json").is_file():
        pytest.skip(f"no packaged charts at {CHARTS_DIR}")
    with live_cluster(*live_toolchain, tmp_path_factory.mktemp("small-cluster")) as plane:
        kube = KubeApi(plane.server, plane.ssl_context())
        project = PulumiProject(toolchain, tmp_path_factory.mktemp("small-stack"), plane.kubeconfig_path)
        project.write_stack(base(plane.kubeconfig_path))
        create_nodes(kube, simulated_nodes(load_spec(project.dir / "blueprints" / "minimal.yaml",
                                                     base(plane.kubeconfig_path))))
        project("stack", "init", project.stack)
        project.set_secrets()
        run = project("up", "--yes", "--skip-preview")
        assert unready(kube) == []
        ready = [p for p in pods(kube) if pod_ready(p)]
        print(f"\nsmall stack after up ({run.seconds:.0f}s): {len(ready)} pods Running and Ready")
        yield project, kube


ESCALATING = {"allowPrivilegeEscalation": True, "capabilities": {"drop": ["ALL"]}, "readOnlyRootFilesystem": True}
BROKEN_CHART = {
    # a chart's pods below their namespace's Pod Security level
    "certificates": {"certManager": {"enabled": True, "values": {"containerSecurityContext": ESCALATING}}},
}
BROKEN_MODELS = {
    "gpu": {"operator": {"enabled": True}},
    # team search: room for one pod only
    "teams": [{"name": "search", "quota": {"pods": 1}}],
    "serving": {"models": [
        model("gpu-scorer", gpu=1),  # a GPU model on a cluster without GPU nodes
        model("crowded", replicas=2, team="search"),  # two replicas in a quota of one pod
        model("spread", replicas=3),  # a node per replica (staging's minDomains), on two nodes
    ]},
}
"""The models' cases in one stack: each breaks its own Deployment, and the three are created together, so one
`up` shows them all."""


def failed_up(small, change: dict) -> tuple[str, str]:
    """`up` of the base stack with `change`: it must fail. Returns the engine's output and the cluster's reasons
    (the API server's and the scheduler's events)."""
    project, kube = small
    project.write_stack(base(project.kubeconfig, **change))
    run = project("up", "--yes", "--skip-preview", check=False)
    assert run.rc != 0, run.text
    assert "Traceback" not in run.out, run.text
    return run.out, "\n".join(unready(kube))


@pytest.fixture(scope="module")
def broken_chart(small) -> tuple[str, str]:
    return failed_up(small, BROKEN_CHART)


@pytest.fixture(scope="module")
def broken_models(small) -> tuple[str, str]:
    return failed_up(small, BROKEN_MODELS)


def test_a_pod_below_its_namespaces_pod_security_level_fails_up(broken_chart):
    out, why = broken_chart
    assert "cert-manager" in out, out
    assert "Deployment cert-manager/cert-manager:" in why, why
    assert 'violates PodSecurity "restricted' in why and "allowPrivilegeEscalation != false" in why, why


def test_a_gpu_model_on_a_target_without_gpus_fails_up(broken_models):
    out, why = broken_models
    assert "gpu-scorer-stable" in out, out
    assert "Deployment fraud/gpu-scorer-stable: 0/1 ready" in why, why
    assert "Insufficient nvidia.com/gpu" in why or "didn't match Pod's node affinity/selector" in why, why


def test_a_quota_too_small_for_a_models_replicas_fails_up(broken_models):
    out, why = broken_models
    assert "crowded-stable" in out, out
    assert "Deployment search/crowded-stable: 1/2 ready" in why, why
    assert "exceeded quota: team-quota, requested: pods=1, used: pods=1, limited: pods=1" in why, why


def test_a_prod_like_spread_the_nodes_cannot_satisfy_fails_up(broken_models):
    """Staging and prod models want a node per replica (serving: minDomains): three replicas, two nodes."""
    out, why = broken_models
    assert "spread-stable" in out, out
    assert "Deployment fraud/spread-stable: 2/3 ready" in why, why
    assert "didn't match pod topology spread constraints" in why, why


def test_the_base_stack_comes_back_when_the_changes_are_reverted(small, broken_chart, broken_models):
    project, kube = small
    project.write_stack(base(project.kubeconfig))
    project("up", "--yes", "--skip-preview")
    assert unready(kube) == []


def test_cloud_targets_get_their_node_pools_at_their_minimum_size():
    """eks/gke: each pool's nodes as the node group starts them (no autoscaler runs in the live cluster),
    sized by machine type, GPU pools with the catalog's GPUs per machine, the GPU taint and label."""
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    pools = [{"name": "system", "instanceType": "m7i.xlarge", "minSize": 2},
             {"name": "gpu", "instanceType": "g6.xlarge", "minSize": 1, "gpu": {"type": "nvidia-l4", "count": 1}}]
    spec = load_spec(root / "blueprints" / "eks-gpu.yaml", {"target": {"nodePools": pools}})
    nodes = {n["metadata"]["name"]: n for n in simulated_nodes(spec)}
    assert sorted(nodes) == ["gpu-0", "system-0", "system-1"]
    assert nodes["system-0"]["status"]["capacity"] == {"cpu": "4", "memory": "16Gi", "pods": "110"}
    assert nodes["system-0"]["spec"]["taints"] == []  # Cilium's agent-not-ready taint: no agent runs here
    gpu = nodes["gpu-0"]
    assert gpu["status"]["capacity"]["nvidia.com/gpu"] == "1"
    assert gpu["spec"]["taints"] == [{"key": "nvidia.com/gpu", "value": "present", "effect": "NoSchedule"}]
    assert gpu["metadata"]["labels"]["nvidia.com/gpu.present"] == "true"
    assert gpu["metadata"]["labels"]["plinth.dev/node-pool"] == "gpu"
    # The shipped blueprint's GPU pool starts at zero nodes: its GPU model has nowhere to run until an
    # autoscaler adds one.
    shipped = simulated_nodes(load_spec(root / "blueprints" / "eks-gpu.yaml"))
    assert [n["metadata"]["name"] for n in shipped] == ["system-0", "system-1"]
