"""Registry-backed models (serving.models[].registry): the init step that fetches a registered version through
MLflow, the labels and annotations naming it, and the rules (at their file:line)."""

from __future__ import annotations

from test_serving import BASE, BENTO, TRITON, objects, spec
from test_spec_errors import overlay_errors
from plinth.catalog import IMAGES
from plinth.engine.offline import plan
from plinth.mirror import mirror_list
from plinth.modules.serving import Serving
from plinth.spec.rules import check_rules
from plinth.targets import WORKLOAD_SERVICE_ACCOUNT

REGISTERED = {**{k: v for k, v in TRITON.items() if k not in ("modelRepository", "repositoryCidrs")},
              "registry": {"model": "fraud-scorer"}, "stable": {"version": "3", "replicas": 2},
              "canary": {"version": "champion", "weight": 10}, "shadow": {"version": "5"}}
MLFLOW = {"registry": {"mlflow": {"enabled": True}}, "storage": {"objectStore": {"enabled": True}},
          "secrets": {"vault": {"enabled": True}}}  # the teams' keys to the store come from Vault


def registered(**overrides):
    return spec(models=[REGISTERED], **{**MLFLOW, **overrides})


REGISTERED_BENTO = {**BENTO, "image": "registry.corp.internal/ml/ranker:2.0.1", "registry": {"model": "search-ranker"},
                    "stable": {"version": "7"}, "canary": {"version": "challenger", "weight": 20}}


def fetch_step(pod: dict, uri: str) -> dict:
    """The init container of a registry-backed pod: the same for both runtimes."""
    [fetch] = pod["initContainers"]
    assert fetch["name"] == "fetch-model" and fetch["image"] == IMAGES["mlflow-client"]
    assert fetch["imagePullPolicy"] == "Always"
    assert fetch["command"] == ["mlflow", "artifacts", "download", "--artifact-uri", uri, "--dst-path", "/models"]
    assert {e["name"]: e["value"] for e in fetch["env"] if "value" in e} == {
        "MLFLOW_TRACKING_URI": "http://mlflow.mlflow.svc", "MLFLOW_ENABLE_PROXY_MULTIPART_DOWNLOAD": "false",
        "MLFLOW_ENABLE_PROXY_MULTIPART_UPLOAD": "false", "HOME": "/tmp", "MLFLOW_ENABLE_TELEMETRY": "false",
        "DO_NOT_TRACK": "true"}
    # With MLflow's sign-on, the team's service account in MLflow; without it the Secret is not there.
    assert {e["name"]: e["valueFrom"] for e in fetch["env"] if "valueFrom" in e} == {
        key: {"secretKeyRef": {"name": "mlflow-credentials", "key": key, "optional": True}}
        for key in ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD")}
    assert fetch["securityContext"]["readOnlyRootFilesystem"] is True
    assert fetch["securityContext"]["capabilities"] == {"drop": ["ALL"]}
    # As the team's workloads (no storage credential: MLflow proxies the files), into the pod's own volume.
    assert pod["serviceAccountName"] == WORKLOAD_SERVICE_ACCOUNT and "envFrom" not in fetch
    assert fetch["volumeMounts"] == [{"name": "tmp", "mountPath": "/tmp"},
                                     {"name": "registered-model", "mountPath": "/models"}]
    [server] = pod["containers"]
    # The server reads the fetched files and holds no MLflow credential.
    assert {"name": "registered-model", "mountPath": "/models", "readOnly": True} in server["volumeMounts"]
    assert {"name": "registered-model", "emptyDir": {}} in pod["volumes"]
    assert not any("valueFrom" in e for e in server.get("env", []))
    return fetch


def registered_metadata(deployment: dict, name: str, version: str, uri: str) -> None:
    for metadata in (deployment["metadata"], deployment["spec"]["template"]["metadata"]):
        assert metadata["labels"]["plinth.dev/registered-model"] == name
        assert metadata["labels"]["plinth.dev/registered-version"] == version
        assert metadata["annotations"] == {"plinth.dev/model-uri": uri}
    # The selector holds nothing version-dependent (immutable in a Deployment).
    assert "plinth.dev/registered-version" not in deployment["spec"]["selector"]["matchLabels"]


def test_each_track_fetches_its_registered_version_before_triton_starts():
    assert check_rules(registered()) == []
    served = objects(plan(registered(), "serving"))
    for track, uri, version in (("stable", "models:/fraud-scorer/3", "3"),
                                ("canary", "models:/fraud-scorer@champion", "champion"),
                                ("shadow", "models:/fraud-scorer/5", "5")):
        deployment = served[("Deployment", "fraud", f"scorer-{track}")].inputs
        pod = deployment["spec"]["template"]["spec"]
        fetch = fetch_step(pod, uri)
        # The model's own CPU and memory, requests equal to limits, no GPU: the pod's quota and QoS are the model's.
        assert fetch["resources"] == {"requests": {"cpu": "1", "memory": "4Gi"},
                                      "limits": {"cpu": "1", "memory": "4Gi"}}
        [server] = pod["containers"]
        assert server["args"][0] == "--model-repository=/models"
        registered_metadata(deployment, "fraud-scorer", version, uri)


def test_a_registered_bento_reads_its_fetched_version_from_plinth_model_dir():
    both = spec(models=[REGISTERED, REGISTERED_BENTO], **MLFLOW)
    assert check_rules(both) == []
    served = objects(plan(both, "serving"))
    assert set(served) >= {("Deployment", "search", "ranker-stable"), ("Deployment", "search", "ranker-canary")}
    for track, uri, version in (("stable", "models:/search-ranker/7", "7"),
                                ("canary", "models:/search-ranker@challenger", "challenger")):
        deployment = served[("Deployment", "search", f"ranker-{track}")].inputs
        pod = deployment["spec"]["template"]["spec"]
        fetch = fetch_step(pod, uri)
        assert fetch["resources"] == {"requests": {"cpu": "1", "memory": "4Gi"},
                                      "limits": {"cpu": "1", "memory": "4Gi"}}
        [server] = pod["containers"]
        # Every track runs the same Bento (the image's own tag); the registered version is what differs.
        assert server["image"] == "registry.corp.internal/ml/ranker:2.0.1"
        assert server["env"] == [{"name": "PLINTH_MODEL_DIR", "value": "/models"}]
        assert "args" not in server and "command" not in server
        registered_metadata(deployment, "search-ranker", version, uri)
        assert deployment["metadata"]["labels"]["app.kubernetes.io/version"] == version
    # A Bento whose model is in its image fetches nothing.
    plain = objects(plan(spec(models=[BENTO]), "serving"))[("Deployment", "search", "ranker-stable")].inputs
    assert "initContainers" not in plain["spec"]["template"]["spec"]
    assert "env" not in plain["spec"]["template"]["spec"]["containers"][0]
    # Listed once for the mirror (both tracks run it), beside the client image.
    images = [i.source for i in mirror_list(both).images]
    assert images.count("registry.corp.internal/ml/ranker:2.0.1") == 1 and IMAGES["mlflow-client"] in images


def test_a_registered_model_needs_no_bucket_identity_and_no_repository_egress():
    assert Serving.identities(registered()) == ()
    served = objects(plan(registered(), "serving"))
    assert [name for (kind, _, name) in served if kind.endswith("NetworkPolicy")] == [
        "allow-from-gateway-scorer", "allow-from-monitoring-scorer"]
    # A repository model's pods get their way out to its object store; a registered model's need none.
    with_repository = objects(plan(spec(models=[TRITON]), "serving"))
    assert ("NetworkPolicy", "fraud", "allow-to-repository-scorer") in with_repository


def test_the_client_image_is_listed_and_pulled_from_the_mirror():
    assert IMAGES["mlflow-client"] in {i.source for i in mirror_list(registered()).images}
    assert IMAGES["mlflow-client"] not in {i.source for i in mirror_list(spec(models=[TRITON])).images}
    mirror = "harbor.corp.internal/mirror"
    airgap = registered(airgap={"enabled": True, "mirror": {"registry": mirror,
                                                            "charts": "oci://harbor.corp.internal/c"}})
    served = objects(plan(airgap, "serving"))
    [fetch] = served[("Deployment", "fraud", "scorer-stable")].inputs["spec"]["template"]["spec"]["initContainers"]
    assert fetch["image"] == f"{mirror}/burakince/mlflow:3.15.1"


REGISTRY_MODEL = """\
serving:
  hostname: serving.models.plinth.internal
  models:
    - name: scorer
      team: fraud
      runtime: {runtime}
      registry: {{model: fraud-scorer}}
      stable: {{version: "{version}"}}
"""


def test_a_registry_backed_model_needs_mlflow(write):
    errors = overlay_errors(write, BASE + "monitoring: {enabled: true}\n"
                            + REGISTRY_MODEL.format(runtime="triton", version="3"))
    assert errors == [
        "bad.yaml:17:7: serving.models[scorer].registry: model 'scorer' serves versions registered in the MLflow "
        "model registry, which is off [rule serving-needs-mlflow; fix: enable registry.mlflow]"]


def test_a_registry_backed_model_has_versions_mlflow_can_name_and_a_bento_its_own_tag(write):
    errors = overlay_errors(write, BASE + "monitoring: {enabled: true}\nstorage: {objectStore: {enabled: true}}\n"
                            "registry: {mlflow: {enabled: true}}\n"
                            + REGISTRY_MODEL.format(runtime="bentoml", version="v3")
                            + "      image: registry.corp.internal/ml/scorer\n"
                            "      modelRepository: s3://models/scorer\n"
                            "      canary: {version: latest}\n"
                            "secrets: {vault: {enabled: true}}\n")
    alias_fix = ("[rule registry-version; fix: use a version number such as 3, or an alias such as champion "
                 "(letters, digits, '_', '-'; not latest or v<number>)]")
    assert errors == [
        "bad.yaml:20:16: serving.models[scorer].stable.version: 'v3' is neither a registered version number nor an "
        f"alias of the registered model {alias_fix}",
        "bad.yaml:21:7: serving.models[scorer].image: image 'registry.corp.internal/ml/scorer' has no tag: the "
        "releases of a registry-backed Bento name registered versions, so the image names the Bento's own [rule "
        "bentoml-image; fix: give the Bento's tag in image (e.g. registry.corp.internal/ml/scorer:1.0.0)]",
        "bad.yaml:22:7: serving.models[scorer].modelRepository: a registry-backed model's files come from MLflow, "
        "not from a model repository [rule registry-source; fix: remove modelRepository, or remove registry]",
        "bad.yaml:23:16: serving.models[scorer].canary.version: 'latest' is neither a registered version number "
        f"nor an alias of the registered model {alias_fix}"]


def test_a_bento_image_is_tagged_exactly_when_it_serves_from_the_registry():
    def rules(model: dict) -> set[str]:
        return {v.rule for v in check_rules(spec(models=[model], **MLFLOW))}

    tagged, digest = "registry.corp.internal/ml/ranker:2.0.1", f"registry.corp.internal/ml/ranker@sha256:{'ab' * 32}"
    assert rules(REGISTERED_BENTO) == set() and rules({**REGISTERED_BENTO, "image": digest}) == set()
    assert rules({**REGISTERED_BENTO, "image": "registry.corp.internal/ml/ranker"}) == {"bentoml-image"}
    assert rules(BENTO) == set() and rules({**BENTO, "image": tagged}) == {"bentoml-image"}


def test_registered_versions_and_aliases_as_pure_rules():
    def rules(version: str) -> set[str]:
        model = {**REGISTERED, "stable": {"version": version}, "canary": None, "shadow": None}
        return {v.rule for v in check_rules(spec(models=[model], **MLFLOW))}

    for good in ("1", "42", "champion", "challenger", "prod_2", "blue-green"):
        assert rules(good) == set(), good
    for bad in ("03", "v3", "V12", "latest", "LATEST", "1.2.0", f"3@sha256:{'ab' * 32}"):
        assert rules(bad) == {"registry-version"}, bad
    # A registered model's name is also a label value: at most 63 characters.


def test_a_registered_model_name_is_a_label_value(write):
    errors = overlay_errors(write, BASE + "monitoring: {enabled: true}\nstorage: {objectStore: {enabled: true}}\n"
                            "registry: {mlflow: {enabled: true}}\n"
                            + REGISTRY_MODEL.format(runtime="triton", version="3").replace(
                                "fraud-scorer", "fraud scorer"))
    assert errors == ["bad.yaml:19:18: serving.models[scorer].registry.model: expected a registered model name that is "
                      "also a label value: at most 63 letters, digits, '-', '_' or '.', starting and ending with a "
                      "letter or digit, got \"fraud scorer\""]


def test_the_report_lists_each_served_track_and_where_its_files_come_from():
    from plinth.governance.report import build_report, markdown
    from plinth.mirror import mirror_list

    bento = {"name": "ranker", "team": "search", "runtime": "bentoml", "image": "registry.corp.internal/ml/ranker",
             "stable": {"version": "1.2.0"}}
    repository = {**TRITON, "name": "legacy", "gpu": 0, "canary": None, "shadow": None, "autoscaling": {}}
    planned_spec = spec(models=[REGISTERED, repository, bento], **MLFLOW)
    report = build_report(plan(planned_spec, "serving"), planned_spec, None, [], mirror_list(planned_spec))
    assert report["models"] == [
        {"name": "fraud/legacy-stable", "model": "legacy", "track": "stable", "version": "3", "registered": None,
         "source": "s3://models/scorer/3"},
        {"name": "fraud/scorer-canary", "model": "scorer", "track": "canary", "version": "champion",
         "registered": "fraud-scorer", "source": "models:/fraud-scorer@champion"},
        {"name": "fraud/scorer-shadow", "model": "scorer", "track": "shadow", "version": "5",
         "registered": "fraud-scorer", "source": "models:/fraud-scorer/5"},
        {"name": "fraud/scorer-stable", "model": "scorer", "track": "stable", "version": "3",
         "registered": "fraud-scorer", "source": "models:/fraud-scorer/3"},
        {"name": "search/ranker-stable", "model": "ranker", "track": "stable", "version": "1.2.0",
         "registered": None, "source": "registry.corp.internal/ml/ranker:1.2.0"}]
    text = markdown(report)
    assert "## Served models and where they come from" in text
    assert "| fraud/scorer-canary | canary | champion | fraud-scorer | models:/fraud-scorer@champion |" in text
    assert "| search/ranker-stable | stable | 1.2.0 | (not registered) | registry.corp.internal/ml/ranker:1.2.0 |" \
        in text


def test_served_model_lineage_is_opt_in_and_asks_prod_for_registered_version_numbers():
    from plinth.governance.check import subjects
    from plinth.governance.policies import evaluate

    def found(environment: str, required: bool, models: list[dict]) -> list[str]:
        planned_spec = spec(models=models, metadata={"name": "test", "environment": environment, "costCenter": "cc-1"},
                            serving={"hostname": "serving.models.plinth.internal", "lineageRequired": required},
                            **MLFLOW)
        [(_, _, violations)] = [r for r in evaluate(subjects(plan(planned_spec, "serving")))
                                if r[0].name == "served-model-lineage"]
        return sorted(f"{v.subject}: {v.message}" for v in violations)

    repository = {**TRITON, "name": "legacy", "canary": None, "shadow": None, "autoscaling": {}}
    both = [REGISTERED, repository]
    assert found("prod", False, both) == [] and found("staging", True, both) == []
    assert found("prod", True, both) == [
        "Deployment fraud/legacy-stable: serves files that are not a version registered in MLflow: nothing traces "
        "them to a run",
        "Deployment fraud/scorer-canary: serves the registered version alias 'champion': an alias moves, so the "
        "version it runs is not fixed by the spec"]
    pinned = {**REGISTERED, "canary": {"version": "4", "weight": 10}}
    assert found("prod", True, [pinned]) == []


def test_registry_backed_deployments_are_valid_kubernetes_and_pass_the_policies():
    import kubernetes_validate

    from plinth.governance.check import subjects
    from plinth.governance.policies import evaluate
    from plinth.render import kubernetes_objects

    planned = plan(spec(models=[REGISTERED, REGISTERED_BENTO], **MLFLOW), "serving")
    deployments = [obj for r, obj in kubernetes_objects(planned)
                   if "plinth:serving:Serving" in r.urn and obj["kind"] == "Deployment"]
    assert len(deployments) == 5
    for obj in deployments:
        kubernetes_validate.validate(obj, "1.34.0", strict=True)
    results = {policy.name: found for policy, _, found in evaluate(subjects(planned))}
    for name in ("served-model-reliability", "gpu-workloads", "pinned-images", "pod-security", "ownership-labels"):
        assert [v for v in results[name] if v.subject.startswith(("Deployment fraud/", "Deployment search/"))] == [], \
            name


def test_a_registered_models_drift_job_fetches_the_reference_of_the_stable_versions_run():
    """drift.reference run:<path>: an init step with MLflow's client (the fetch step's image and environment)
    downloads that artifact of the stable version's run; the job reads it there, and mounts only the window's
    claim. The step itself against the real server: tests/test_registry_server.py."""
    import kubernetes_validate

    from plinth.governance.check import subjects
    from plinth.governance.podsecurity import restricted
    from plinth.governance.policies import evaluate
    from plinth.modules.serving.drift import FETCH_REFERENCE
    from plinth.render import kubernetes_objects
    from plinth.vocabulary import USER_PROVIDED

    drifting = {**REGISTERED, "drift": {"reference": "run:data/train.parquet", "window": "pvc://fraud-logs/w.csv"}}
    planned = plan(spec(models=[drifting], **MLFLOW), "serving")
    cronjob = objects(planned)[("CronJob", "fraud", "scorer-drift")].inputs
    assert cronjob["metadata"]["annotations"][USER_PROVIDED] == "PersistentVolumeClaim/fraud-logs"
    pod = cronjob["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    [step], [job] = pod["initContainers"], pod["containers"]
    model_fetch = fetch_step(objects(planned)[("Deployment", "fraud", "scorer-stable")].inputs["spec"]["template"]
                             ["spec"], "models:/fraud-scorer/3")
    assert (step["name"], step["image"], step["env"]) == ("fetch-reference", model_fetch["image"], model_fetch["env"])
    assert step["command"] == ["python", "-c", FETCH_REFERENCE, "fraud-scorer", "3", "data/train.parquet",
                               "/reference", str(1 << 30)]
    assert step["resources"] == job["resources"]  # the pod's quota is the job's
    assert step["volumeMounts"] == [{"name": "tmp", "mountPath": "/tmp"}, {"name": "reference",
                                                                          "mountPath": "/reference"}]
    assert job["args"][:2] == ["--reference=/reference/train.parquet", "--window=/data/fraud-logs/w.csv"]
    assert {"name": "reference", "mountPath": "/reference", "readOnly": True} in job["volumeMounts"]
    assert {"name": "reference", "emptyDir": {"sizeLimit": "1024Mi"}} in pod["volumes"]
    assert [v["persistentVolumeClaim"]["claimName"] for v in pod["volumes"] if "persistentVolumeClaim" in v] == [
        "fraud-logs"]
    assert restricted(pod) == []
    [obj] = [o for r, o in kubernetes_objects(planned) if o["kind"] == "CronJob"]
    kubernetes_validate.validate(obj, "1.34.0", strict=True)
    assert [v for _, _, found in evaluate(subjects(planned)) for v in found if "scorer-drift" in v.subject] == []
