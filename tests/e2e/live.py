"""The live acceptance cluster: what runs, what is simulated, and what is not.

Real (the upstream binaries, built by toolchain/build.sh):
  * kube-apiserver with its default admission chain -- Pod Security (each namespace's
    `pod-security.kubernetes.io/enforce` level), ServiceAccount, ResourceQuota, LimitRanger,
    DefaultStorageClass, ... -- and RBAC;
  * kube-controller-manager: namespaces, ServiceAccounts and their tokens, garbage collection,
    Deployments/ReplicaSets/StatefulSets/DaemonSets/Jobs/CronJobs, endpoints and EndpointSlices,
    HPA (no metrics API: it never scales), disruption budgets, quotas, PV binding and protection;
  * kube-scheduler with its default plugins: resources (CPU, memory, nvidia.com/gpu), taints and
    tolerations, node selectors and affinity, pod (anti-)affinity, topology spread, volume binding.

Simulated:
  * nodes: KWOK (`kwok`, sigs.k8s.io/kwok) plays the kubelet of the Node objects `simulated_nodes`
    derives from the spec (annotation kwok.x-k8s.io/node=fake): a node is Ready at once; a pod bound to
    it is Running and Ready at once (readiness probes are not run); a Job's pod Succeeds; a deleted pod
    goes (KWOK's "fast" stages, toolchain/build.sh);
  * volumes: `VolumeProvisioner` stands in for Longhorn's manager and CSI provisioner: it creates the
    StorageClass the chart ships as a ConfigMap, and a PersistentVolume for every claim of a class whose
    provisioner is Longhorn's (the PV controller binds them);
  * Cilium's CRDs (network policies) are installed by the fixture, as the Cilium operator would.

Not simulated (so not proven here):
  * containers never run: no image is pulled, no command, probe, volume mount, secret or config map
    reference is exercised (a pod mounting a Secret nobody creates still becomes Ready);
  * no CNI, no kube-proxy, no network policy enforcement, no DNS; Services get endpoints only;
  * no LoadBalancer addresses (Services of type LoadBalancer stay <pending>);
  * admission webhooks stay off: their servers never run (cert-manager's, the Prometheus operator's,
    the Vault agent injector's, the Vault secrets operator's, Longhorn's, CloudNativePG's, the Redis
    operator's, Cilium's -- controlplane.py);
  * operators never run, so their custom resources produce no pods: CloudNativePG `Cluster`s, the Redis
    operator's `Redis`, cert-manager `Certificate`s (no Secret is issued), Vault secrets operator syncs,
    the Prometheus operator's Prometheus/Alertmanager StatefulSets, Cilium's Gateway (no Envoy, no
    LoadBalancer Service), Longhorn's CSI Deployments and engine/instance managers, the GPU operator's
    DaemonSets (the GPU node's capacity is declared on the Node instead).
"""

from __future__ import annotations

import contextlib
import re
import threading
from pathlib import Path

import yaml

from binaries import toolchain_crds
from controlplane import KWOK_NODE, LocalControlPlane
from kubeapi import ApiError, KubeApi, established
from plinth.catalog import GPU_MACHINES
from plinth.modules.cluster import NODE_POOL_LABEL
from plinth.modules.gpu import GPU_RESOURCE, gpu_node_selector, gpu_taint

@contextlib.contextmanager
def live_cluster(bin_dir: Path, kwok_stages: Path, workdir: Path):
    """A control plane with the scheduler and KWOK (no nodes yet: each stack adds those of its spec), the CRDs
    Cilium's operator would have registered, and the stand-in volume provisioner."""
    with LocalControlPlane(bin_dir, workdir, controller_manager=True, scheduler=True,
                           kwok_stages=kwok_stages) as plane:
        kube = KubeApi(plane.server, plane.ssl_context())
        crds = [yaml.safe_load(path.read_text()) for path in toolchain_crds()]
        for crd in crds:
            kube.apply(crd)
        for crd in crds:
            assert established(kube.wait(crd, established)), crd["metadata"]["name"]
        with VolumeProvisioner(KubeApi(plane.server, plane.ssl_context())):
            yield plane


ZONES = ("zone-a", "zone-b", "zone-c")
"""Simulated nodes are spread over three zones, round robin."""
MACHINE_SHAPES: dict[str, tuple[int, str]] = {
    # (CPU cores, memory) of the machine types the shipped blueprints use; allocatable is taken as capacity.
    "m7i.xlarge": (4, "16Gi"), "m7i.2xlarge": (8, "32Gi"), "g6.xlarge": (4, "16Gi"), "g6.2xlarge": (8, "32Gi"),
    "g5.xlarge": (4, "16Gi"), "g4dn.xlarge": (4, "16Gi"),
    "n2-standard-4": (4, "16Gi"), "n2-standard-8": (8, "32Gi"), "g2-standard-4": (4, "16Gi"),
    "g2-standard-8": (8, "32Gi"), "n1-standard-4": (4, "15Gi"),
}
"""A simulated cloud node's size; a pool of another type fails the fixture with its name."""


def node(name: str, index: int, cpu: int, memory: str, gpus: int = 0, labels: dict | None = None) -> dict:
    """One Node for KWOK: capacity = allocatable; GPU nodes carry the GPU taint, label and resource."""
    resources = {"cpu": str(cpu), "memory": memory, "pods": "110", **({GPU_RESOURCE: str(gpus)} if gpus else {})}
    return {
        "apiVersion": "v1", "kind": "Node",
        "metadata": {"name": name, "annotations": {KWOK_NODE: "fake"}, "labels": {
            "kubernetes.io/hostname": name, "kubernetes.io/os": "linux", "kubernetes.io/arch": "amd64",
            "topology.kubernetes.io/zone": ZONES[index % len(ZONES)], "type": "kwok",
            **(gpu_node_selector() if gpus else {}), **(labels or {})}},
        "spec": {"taints": [gpu_taint()] if gpus else []},
        "status": {"capacity": resources, "allocatable": resources,
                   "addresses": [{"type": "InternalIP", "address": f"10.255.0.{index + 1}"}]},
    }


def simulated_nodes(spec) -> list[dict]:
    """The nodes of the spec's target: on eks/gke each node pool at its minimum size (what the node group
    starts with; no autoscaler runs here), shaped like its machine type; on `existing` testing.nodes.
    Cloud pools' Cilium agent-not-ready taint is left out: Cilium's agent, which removes it, never runs."""
    if spec.target.type == "existing":
        n = spec.testing.nodes
        shapes = [(f"cpu-{i}", 0, {}) for i in range(n.cpu_nodes)] + \
                 [(f"gpu-{i}", n.gpus_per_node, {}) for i in range(n.gpu_nodes)]
        return [node(name, i, n.cpu, n.memory, gpus, labels) for i, (name, gpus, labels) in enumerate(shapes)]
    nodes = []
    for pool in spec.target.node_pools:
        if pool.instance_type not in MACHINE_SHAPES:
            raise ValueError(f"no simulated shape for machine type {pool.instance_type} (live.py MACHINE_SHAPES)")
        cpu, memory = MACHINE_SHAPES[pool.instance_type]
        gpus = GPU_MACHINES[spec.target.type][pool.instance_type].count if pool.gpu else 0
        for i in range(pool.min_size):
            nodes.append(node(f"{pool.name}-{i}", len(nodes), cpu, memory, gpus, {NODE_POOL_LABEL: pool.name}))
    return nodes


def create_nodes(kube: KubeApi, nodes: list[dict]) -> None:
    """Create the nodes (status included: a kubelet registers its node with its capacity)."""
    for obj in nodes:
        kube.request("POST", "/api/v1/nodes", obj)


LONGHORN_PROVISIONER = "driver.longhorn.io"
LONGHORN_STORAGECLASS_CONFIGMAP = ("longhorn-system", "longhorn-storageclass")
"""The chart ships its StorageClass as a ConfigMap that longhorn-manager applies when it starts."""


class VolumeProvisioner:
    """Background thread standing in for Longhorn's manager and CSI provisioner (see the module docstring)."""

    def __init__(self, kube: KubeApi, interval: float = 0.5):
        self.kube, self.interval = kube, interval
        self.provisioned: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="volume-provisioner", daemon=True)

    def __enter__(self) -> VolumeProvisioner:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self._storage_class()
                self._claims()
            except (ApiError, OSError):
                continue

    def _storage_class(self) -> None:
        namespace, name = LONGHORN_STORAGECLASS_CONFIGMAP
        try:
            cm = self.kube.request("GET", f"/api/v1/namespaces/{namespace}/configmaps/{name}")
        except ApiError as exc:
            if exc.status == 404:
                return
            raise
        sc = yaml.safe_load(cm["data"]["storageclass.yaml"])
        try:
            self.kube.request("POST", "/apis/storage.k8s.io/v1/storageclasses", sc)
        except ApiError as exc:
            if exc.status != 409:
                raise

    def _claims(self) -> None:
        classes = {sc["metadata"]["name"]: sc for sc in
                   self.kube.request("GET", "/apis/storage.k8s.io/v1/storageclasses")["items"]}
        for pvc in self.kube.request("GET", "/api/v1/persistentvolumeclaims")["items"]:
            meta, spec = pvc["metadata"], pvc["spec"]
            sc = classes.get(spec.get("storageClassName") or "")
            if (sc is None or sc["provisioner"] != LONGHORN_PROVISIONER or spec.get("volumeName")
                    or meta.get("deletionTimestamp")):
                continue
            if sc.get("volumeBindingMode") == "WaitForFirstConsumer" and \
                    "volume.kubernetes.io/selected-node" not in meta.get("annotations", {}):
                continue  # the scheduler picks the node first
            name = f"pvc-{meta['uid']}"
            pv = {"apiVersion": "v1", "kind": "PersistentVolume", "metadata": {
                "name": name, "annotations": {"pv.kubernetes.io/provisioned-by": LONGHORN_PROVISIONER}},
                "spec": {"capacity": {"storage": spec["resources"]["requests"]["storage"]},
                         "accessModes": spec["accessModes"], "storageClassName": sc["metadata"]["name"],
                         "persistentVolumeReclaimPolicy": sc.get("reclaimPolicy", "Delete"),
                         "volumeMode": spec.get("volumeMode", "Filesystem"),
                         "csi": {"driver": LONGHORN_PROVISIONER, "volumeHandle": name},
                         "claimRef": {"apiVersion": "v1", "kind": "PersistentVolumeClaim", "name": meta["name"],
                                      "namespace": meta["namespace"], "uid": meta["uid"]}}}
            try:
                self.kube.request("POST", "/api/v1/persistentvolumes", pv)
                self.provisioned.append(f"{meta['namespace']}/{meta['name']}")
            except ApiError as exc:
                if exc.status != 409:
                    raise


# --- what the cluster shows after `up` ------------------------------------------------------------------

WORKLOADS = (("apps/v1", "deployments", "Deployment"), ("apps/v1", "statefulsets", "StatefulSet"),
             ("apps/v1", "daemonsets", "DaemonSet"))


def workloads(kube: KubeApi) -> list[dict]:
    return [{**w, "kind": kind} for group, plural, kind in WORKLOADS
            for w in kube.request("GET", f"/apis/{group}/{plural}")["items"]]


def desired(workload: dict) -> int:
    if workload["kind"] == "DaemonSet":
        return workload.get("status", {}).get("desiredNumberScheduled", 0)
    return workload["spec"].get("replicas", 1)


def ready(workload: dict) -> int:
    status = workload.get("status", {})
    return status.get("numberReady" if workload["kind"] == "DaemonSet" else "readyReplicas", 0)


def unready(kube: KubeApi) -> list[str]:
    """Every workload short of its replicas, with the API server's reason (admission, scheduling)."""
    events = kube.request("GET", "/api/v1/events")["items"]
    out = []
    for w in workloads(kube):
        if ready(w) >= desired(w):
            continue
        ns, name = w["metadata"]["namespace"], w["metadata"]["name"]
        # one line per distinct reason: the pod names in the messages differ, the reasons do not
        why = sorted({re.sub(r'pods "[^"]*"', "pods", e["message"].removeprefix("(combined from similar events): "))
                      for e in events
                      if e["metadata"]["namespace"] == ns and e["reason"] in ("FailedCreate", "FailedScheduling")
                      and e["involvedObject"]["name"].startswith(name)})
        out.append(f"{w['kind']} {ns}/{name}: {ready(w)}/{desired(w)} ready; {'; '.join(why) or 'no event'}")
    return out


def pods(kube: KubeApi) -> list[dict]:
    return kube.request("GET", "/api/v1/pods")["items"]


def pod_ready(pod: dict) -> bool:
    return any(c["type"] == "Ready" and c["status"] == "True" for c in pod.get("status", {}).get("conditions", []))


def requests_gpu(pod: dict) -> bool:
    return any(GPU_RESOURCE in (c.get("resources") or {}).get(part, {})
               for c in pod["spec"]["containers"] for part in ("requests", "limits"))


def node_agent(pod: dict) -> bool:
    """A DaemonSet's pod: it runs on every node it tolerates, GPU nodes included, by design."""
    return any(ref["kind"] == "DaemonSet" for ref in pod["metadata"].get("ownerReferences", []))


def _matches(selector: dict, labels: dict) -> bool:
    if any(labels.get(k) != v for k, v in selector.get("matchLabels", {}).items()):
        return False
    for expr in selector.get("matchExpressions", []):
        value, op = labels.get(expr["key"]), expr["operator"]
        if (op == "In" and value not in expr["values"]) or (op == "NotIn" and value in expr["values"]) or \
                (op == "Exists" and value is None) or (op == "DoesNotExist" and value is not None):
            return False
    return True


def spread_violations(all_pods: list[dict]) -> list[str]:
    """Pods sharing a node against their own hard rule: a required pod anti-affinity on the host name, or a
    DoNotSchedule topology spread on it with minDomains (Plinth's staging and prod models: a node each)."""
    out = []
    for pod in all_pods:
        spec, ns = pod["spec"], pod["metadata"]["namespace"]
        terms = [t for t in ((spec.get("affinity") or {}).get("podAntiAffinity") or {})
                 .get("requiredDuringSchedulingIgnoredDuringExecution", []) if t["topologyKey"] == HOSTNAME]
        terms += [{"labelSelector": c["labelSelector"]} for c in spec.get("topologySpreadConstraints", [])
                  if c["topologyKey"] == HOSTNAME and c["whenUnsatisfiable"] == "DoNotSchedule"
                  and c.get("minDomains", 1) > 1]
        for term in terms:
            peers = [p["metadata"]["name"] for p in all_pods if p is not pod and p["metadata"]["namespace"] == ns
                     and p["spec"].get("nodeName") == spec.get("nodeName")
                     and _matches(term["labelSelector"], p["metadata"].get("labels", {}))
                     and all(p["metadata"].get("labels", {}).get(k) == pod["metadata"].get("labels", {}).get(k)
                             for k in ("pod-template-hash",) if k in pod["metadata"].get("labels", {}))]
            if peers:
                out.append(f"{ns}/{pod['metadata']['name']} shares node {spec.get('nodeName')} with {peers}")
    return out


HOSTNAME = "kubernetes.io/hostname"


def quota_overruns(objects: list[dict]) -> list[str]:
    """Each team namespace's Deployments at their maximum replicas (an HPA's maxReplicas where one targets
    them), summed the way quota admission sums a pod (containers, or the largest init container if more),
    against the namespace's ResourceQuota: what would not be admitted."""
    from plinth.spec.models import quantity_value

    quotas = {o["metadata"]["namespace"]: o["spec"]["hard"] for o in objects if o["kind"] == "ResourceQuota"}
    limit_ranges = {o["metadata"]["namespace"]: o["spec"]["limits"][0] for o in objects if o["kind"] == "LimitRange"}
    hpas = {(o["metadata"]["namespace"], o["spec"]["scaleTargetRef"]["name"]): o["spec"]["maxReplicas"]
            for o in objects if o["kind"] == "HorizontalPodAutoscaler"}
    used: dict[str, dict[str, float]] = {}
    for o in objects:
        ns = o["metadata"].get("namespace")
        if o["kind"] != "Deployment" or ns not in quotas:
            continue
        replicas = hpas.get((ns, o["metadata"]["name"]), o["spec"].get("replicas", 1))
        default = (limit_ranges.get(ns) or {}).get("defaultRequest", {})
        pod = o["spec"]["template"]["spec"]

        def requests(container: dict) -> dict[str, float]:
            asked = {**default, **((container.get("resources") or {}).get("requests") or {})}
            return {k: quantity_value(str(v)) for k, v in asked.items()}

        total: dict[str, float] = {}
        for c in pod["containers"]:
            for k, v in requests(c).items():
                total[k] = total.get(k, 0) + v
        for c in pod.get("initContainers", []):
            for k, v in requests(c).items():
                total[k] = max(total.get(k, 0), v)
        sums = used.setdefault(ns, {})
        for k, v in {**total, "pods": 1}.items():
            sums[k] = sums.get(k, 0) + v * replicas
    out = []
    for ns, sums in used.items():
        for key, hard in quotas[ns].items():
            resource = key.removeprefix("requests.")
            if resource in sums and sums[resource] > quantity_value(str(hard)) * (1 + 1e-9):
                out.append(f"{ns}: {resource} {sums[resource]:g} at maximum replicas > quota {hard}")
    return out
