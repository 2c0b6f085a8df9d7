"""Property: whatever a user (or an attacker) puts in spec files, the CLI exits 0, or 2 with
located messages, and never shows a traceback.

Inputs: mutated blueprints, YAML aliases, deep nesting, huge scalars, arbitrary unicode
and bytes, and `extends:` graphs (chains, cycles, directories, missing files).
Served models: generated serving blocks (runtimes, canary, shadow, autoscaling, GPUs, SLOs)
with the teams and quotas they need plan with the exact canary split and GPU placement; one
known defect added to such a block is refused at its field, with its rule.
Each property runs a few dozen examples by default (seconds); the heavy tier runs each
with 10,000: `pytest -m heavy tests/test_fuzz.py` (or PLINTH_HEAVY=1; tests/conftest.py).
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import sys
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from ruamel.yaml import YAML

from support import ROOT
from plinth.cli import main
from plinth.plan import Plan
from plinth.render import kubernetes_objects
from plinth.spec.rules import RESERVED_NAMESPACES
from plinth.spec.yamltree import MAX_BYTES, MAX_DEPTH

MINIMAL_TEXT = (ROOT / "blueprints" / "minimal.yaml").read_text()
BASE = YAML(typ="safe").load(MINIMAL_TEXT)
HEAVY_EXAMPLES = 10_000


def tiers(default: int) -> list:
    return [pytest.param(default, id="default"),
            pytest.param(HEAVY_EXAMPLES, id="heavy", marks=pytest.mark.heavy)]


def check(strategy, examples: int, prop) -> None:
    """Run `prop` on `examples` draws of `strategy` (hypothesis; shrinks any failure)."""
    settings(max_examples=examples, deadline=None, database=None,
             suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])(given(strategy)(prop))()


# --- running the CLI in-process -------------------------------------------------------


def run_cli(*args) -> tuple[int, str]:
    err = io.StringIO()
    argv = sys.argv
    sys.argv = ["plinth", *args]
    try:
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
            main()
        code = 0
    except SystemExit as exc:
        code = exc.code
    finally:
        sys.argv = argv
    return code, err.getvalue()


def assert_clean(code: int, err: str, files: tuple[str, ...]) -> None:
    """Exit 0, or 2 where every error names one of `files` first; never a traceback."""
    assert code in (0, 2), err
    assert "Traceback" not in err and "internal error" not in err, err
    if code == 2:
        *errors, summary = err.strip().splitlines()
        assert summary.endswith(("error", "errors")) and errors, err
        for line in errors:
            assert line.split(":", 1)[0].endswith(files), f"not located: {line!r}"


def cli_on_files(files: dict[str, bytes | str], entry: str, verb: str = "validate") -> None:
    """Write `files` into a fresh directory and run `plinth VERB entry` there."""
    with tempfile.TemporaryDirectory() as tmp:
        for name, content in files.items():
            path = Path(tmp) / name
            path.parent.mkdir(parents=True, exist_ok=True)
            if isinstance(content, str):
                content = content.encode("utf-8")
            path.write_bytes(content)
        code, err = run_cli(verb, str(Path(tmp) / entry))
    assert_clean(code, err, tuple(Path(n).name for n in files))


# --- mutated blueprints (planned: the whole program runs) ----------------------------

junk = st.recursive(
    st.none() | st.booleans() | st.integers(-5, 10**6) | st.floats(allow_nan=False) | st.text(max_size=12),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=6,
)


def paths(node, prefix=()):
    yield prefix
    if isinstance(node, dict):
        for key, value in node.items():
            yield from paths(value, (*prefix, key))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from paths(value, (*prefix, index))


ALL_PATHS = [p for p in paths(BASE) if p]


@st.composite
def mutated(draw):
    doc = YAML(typ="safe").load(MINIMAL_TEXT)
    for _ in range(draw(st.integers(1, 3))):
        path = draw(st.sampled_from(ALL_PATHS))
        parent = doc
        try:
            for part in path[:-1]:
                parent = parent[part]
            action = draw(st.sampled_from(["replace", "delete", "add"]))
            if action == "replace":
                parent[path[-1]] = draw(junk)
            elif action == "delete" and isinstance(parent, dict):
                parent.pop(path[-1], None)
            elif isinstance(parent, dict):
                parent[draw(st.text(min_size=1, max_size=10))] = draw(junk)
        except (KeyError, IndexError, TypeError):
            continue  # an earlier mutation removed or reshaped this path
    return doc


def dump(doc) -> str:
    stream = io.StringIO()
    YAML(typ="safe").dump(doc, stream)
    return stream.getvalue()


@pytest.mark.parametrize("examples", tiers(20))  # a plan takes a third of a second: few by default
def test_mutated_blueprints_plan_or_exit_2(examples):
    check(mutated(), examples, lambda doc: cli_on_files({"fuzz.yaml": dump(doc)}, "fuzz.yaml", verb="plan"))


# --- served models (planned: the serving module runs on what is generated) ----------------
#
# A generated platform serves 1-4 models (Triton on pvc://, s3:// or gs://, BentoML; canary, shadow,
# autoscaling, GPUs, SLOs) for 1-3 teams whose quotas are computed to fit them, with the Gateway on or
# off. Valid platforms must plan, with the exact canary split and GPU placement; each broken one has ONE
# known defect added and must be refused (exit 2) with that defect's located error among the others.

SERVING_HOST = "serving.models.plinth.internal"
"""One name under the default Gateway listener *.models.plinth.internal (rule serving-hostname)."""
GPU_TOLERATION = {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}
GPU_NODE_SELECTOR = {"nvidia.com/gpu.present": "true"}
CPU_MILLI = {"250m": 250, "500m": 500, "1": 1000, "2": 2000}
MEMORY_MI = {"512Mi": 512, "1Gi": 1024, "4Gi": 4096}

labels = st.from_regex(r"[a-z]([-a-z0-9]{0,38}[a-z0-9])?", fullmatch=True)
team_names = labels.filter(lambda name: name not in RESERVED_NAMESPACES)
versions = st.from_regex(r"[A-Za-z0-9]([-A-Za-z0-9_.]{0,10}[A-Za-z0-9])?", fullmatch=True)


def replicas_at_most(model: dict) -> int:
    """Every replica the model can run at once (what the quota rules count): stable at the autoscaler's
    maximum, canary and shadow."""
    scaling = model.get("autoscaling", {})
    stable = scaling["maxReplicas"] if scaling.get("enabled") else model["stable"]["replicas"]
    return stable + sum(model[track]["replicas"] for track in ("canary", "shadow") if track in model)


def needs(models: list[dict], team: str) -> tuple[int, int, int]:
    """(millicores, MiB, GPUs) the team's models take at their largest."""
    mine = [(m, replicas_at_most(m)) for m in models if m["team"] == team]
    return (sum(CPU_MILLI[m["cpu"]] * n for m, n in mine), sum(MEMORY_MI[m["memory"]] * n for m, n in mine),
            sum(m["gpu"] * n for m, n in mine))


@st.composite
def served_model(draw, name: str, team: str, gateway: bool) -> dict:
    runtime = draw(st.sampled_from(["triton", "bentoml"]))
    model: dict = {"name": name, "team": team, "runtime": runtime}
    if runtime == "triton":
        scheme = draw(st.sampled_from(["pvc", "s3", "gs"]))
        if scheme == "pvc":
            model["modelRepository"] = f"pvc://{draw(labels)}/triton/{name}"
        else:
            model["modelRepository"] = f"{scheme}://models/{name}"
            model["repositoryCidrs"] = draw(st.lists(st.sampled_from(["10.30.0.0/16", "192.168.7.0/24"]),
                                                     min_size=1, max_size=2, unique=True))
    else:
        model["image"] = f"registry.corp.internal/ml/{name}"
    stable, canary, shadow = draw(st.lists(versions, min_size=3, max_size=3, unique=True))
    model["gpu"] = draw(st.sampled_from([0, 0, 1, 2]))
    model["cpu"], model["memory"] = draw(st.sampled_from(sorted(CPU_MILLI))), draw(st.sampled_from(sorted(MEMORY_MI)))
    model["stable"] = {"version": stable, "replicas": draw(st.integers(0, 3))}
    if gateway and draw(st.booleans()):
        model["canary"] = {"version": canary, "replicas": draw(st.integers(0, 2)), "weight": draw(st.integers(0, 100))}
    if gateway and draw(st.integers(0, 3)) == 0:
        model["shadow"] = {"version": shadow, "replicas": draw(st.integers(0, 2))}
    if draw(st.booleans()):
        model["stable"]["replicas"] = max(1, model["stable"]["replicas"])
        model["autoscaling"] = {"enabled": True, "maxReplicas": draw(st.integers(model["stable"]["replicas"], 5)),
                                "targetUtilization": draw(st.integers(1, 100))}
    if draw(st.booleans()):
        model["slo"] = {"latencyMs": draw(st.integers(1, 10_000)),
                        "errorRatePercent": draw(st.sampled_from([0.1, 0.5, 1, 2.5, 100]))}
    return model


@st.composite
def served_platform(draw) -> dict:
    """A valid platform serving models: the minimal blueprint's tenancy, the services serving needs, the
    teams the models name with quotas that fit them."""
    gateway = draw(st.booleans())
    doc = YAML(typ="safe").load(MINIMAL_TEXT)
    teams = draw(st.lists(team_names, min_size=1, max_size=3, unique=True))
    model_names = draw(st.lists(labels, min_size=1, max_size=4, unique=True))
    models = [draw(served_model(name, draw(st.sampled_from(teams)), gateway)) for name in model_names]
    doc["teams"] = []
    for team in teams:
        cpu, memory, gpus = needs(models, team)
        slack = draw(st.sampled_from([0, 0, 1]))  # mostly exactly what the models take at their largest
        doc["teams"].append({"name": team, "quota": {"cpu": f"{cpu + 500 * slack}m",
                                                     "memory": f"{memory + 1024 * slack}Mi", "gpu": gpus + slack}})
    cilium = "on" if gateway else draw(st.sampled_from(["off", "gateway-off"]))
    if cilium != "off":
        doc["network"] = {"cilium": {"enabled": True, "apiServer": {"host": "api.k8s.internal"},
                                     "gatewayApi": cilium == "on"},
                          "loadBalancer": {"ranges": ["172.31.255.240/29"]}}
        doc["certificates"] = {"certManager": {"enabled": True}}
    doc["monitoring"] = {"enabled": True, "gpuMetrics": draw(st.booleans())}
    if draw(st.booleans()):
        doc["monitoring"]["drift"] = {"enabled": True, "receiver": "retrain"}
        doc["monitoring"]["alertmanager"] = {"receivers": [{"name": "retrain", "type": "webhook"}]}
    if any(m["gpu"] for m in models) or draw(st.booleans()):
        doc["gpu"] = {"operator": {"enabled": True}}
    doc["serving"] = {"models": models}
    if gateway:
        doc["serving"]["hostname"] = SERVING_HOST
    return doc


def plan_file(doc: dict) -> tuple[int, str, object]:
    """`plinth plan fuzz.yaml --out DIR` in-process: (exit code, stderr, the plan when there is one)."""
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "fuzz.yaml").write_text(dump(doc))
        code, err = run_cli("plan", str(Path(tmp) / "fuzz.yaml"), "--out", str(Path(tmp) / "out"))
        out = Path(tmp) / "out" / "plan.json"
        return code, err, Plan.from_json(out.read_text()) if code == 0 else None


def weighted_rules(route: dict) -> list[dict]:
    """The route's weighted rules: those not matched by a header (the split every other request takes)."""
    return [rule for rule in route["rules"] if not any(match.get("headers") for match in rule.get("matches", []))]


def assert_served_as_specified(doc: dict, result) -> None:
    objects: dict[tuple[str, str | None, str], dict] = {}
    for _, obj in kubernetes_objects(result):
        objects[(obj["kind"], obj["metadata"].get("namespace"), obj["metadata"]["name"])] = obj
    gateway = doc.get("network", {}).get("cilium", {}).get("gatewayApi") is True
    # Names derived from 40-character model and team names stay valid Kubernetes object names.
    long = [key for key, obj in objects.items() if obj["metadata"].get("labels", {}).get("plinth.dev/model")
            and not re.fullmatch(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?", key[2])]
    assert long == [], long
    for model in doc["serving"]["models"]:
        name, team = model["name"], model["team"]
        tracks = [t for t in ("stable", "canary", "shadow") if t in model]
        deployments = {key[2]: obj for key, obj in objects.items() if key[0] == "Deployment" and key[1] == team
                       and obj["metadata"]["labels"].get("plinth.dev/model") == name}
        assert sorted(deployments) == sorted(f"{name}-{t}" for t in tracks), (name, sorted(deployments))
        for track in tracks:
            deploy = deployments[f"{name}-{track}"]
            scaled = track == "stable" and model.get("autoscaling", {}).get("enabled")
            assert deploy["spec"]["replicas"] == model[track]["replicas"], (name, track)
            pod = deploy["spec"]["template"]["spec"]
            [container] = pod["containers"]
            limits, requests = container["resources"]["limits"], container["resources"]["requests"]
            tolerated = [t for t in pod.get("tolerations", []) if t.get("key") in ("nvidia.com/gpu", None)]
            if model["gpu"]:
                assert limits.get("nvidia.com/gpu") == str(model["gpu"]), (name, limits)
                assert tolerated == [GPU_TOLERATION], (name, pod.get("tolerations"))
                assert pod.get("nodeSelector") == GPU_NODE_SELECTOR, (name, pod.get("nodeSelector"))
            else:
                assert "nvidia.com/gpu" not in limits and "nvidia.com/gpu" not in requests, (name, limits)
                assert tolerated == [] and not (pod.get("nodeSelector") or {}).keys() & GPU_NODE_SELECTOR.keys(), \
                    (name, pod.get("tolerations"), pod.get("nodeSelector"))
            assert (limits["cpu"], limits["memory"]) == (model["cpu"], model["memory"]), (name, limits)
            if scaled:
                hpa = objects[("HorizontalPodAutoscaler", team, name)]["spec"]
                assert (hpa["minReplicas"], hpa["maxReplicas"]) == (
                    max(1, model["stable"]["replicas"]), model["autoscaling"]["maxReplicas"]), (name, hpa)
        if not model.get("autoscaling", {}).get("enabled"):
            assert ("HorizontalPodAutoscaler", team, name) not in objects, name
        route = objects.get(("HTTPRoute", team, name))
        assert (route is not None) == gateway, (name, gateway)
        if route:
            weight = model["canary"]["weight"] if "canary" in model else None
            expected = [(name, 100)] if weight is None else [(name, 100 - weight), (f"{name}-canary", weight)]
            rules = weighted_rules(route["spec"])
            assert rules, route["spec"]
            for rule in rules:
                refs = [(ref["name"], ref["weight"]) for ref in rule["backendRefs"]]
                assert refs == expected and sum(w for _, w in refs) == 100, (name, refs)
                mirrors = [f["requestMirror"]["backendRef"]["name"] for f in rule.get("filters", [])
                           if f["type"] == "RequestMirror"]
                assert mirrors == ([f"{name}-shadow"] if "shadow" in model else []), (name, mirrors)
        alerts = {r["alert"]: r for r in objects[("PrometheusRule", team, name)]["spec"]["groups"][0]["rules"]}
        slo = model.get("slo", {"latencyMs": 500, "errorRatePercent": 1})
        assert alerts["ModelLatencyHigh"]["expr"].endswith(f"> {slo['latencyMs']}"), alerts["ModelLatencyHigh"]
        assert alerts["ModelErrorRateHigh"]["expr"].endswith(f"> {slo['errorRatePercent'] / 100:g}"), \
            alerts["ModelErrorRateHigh"]


def plans_as_specified(doc: dict) -> None:
    code, err, result = plan_file(doc)
    assert code == 0, err
    assert_served_as_specified(doc, result)


@pytest.mark.parametrize("examples", tiers(8))  # each runs the whole program: few by default
def test_valid_serving_blocks_plan_with_exact_splits_and_gpu_placement(examples):
    check(served_platform(), examples, plans_as_specified)


DEFECTS = ["team", "canary-differs", "gpu-needs-operator", "quota", "canary-needs-gateway",
           "serving-needs-monitoring", "model-repository-egress", "bentoml-image", "autoscaling-bounds",
           "serving-hostname", "weight"]


@st.composite
def broken_platform(draw) -> tuple[dict, str, str | None]:
    """A valid served platform with ONE defect: (doc, the field path the error names, its rule or None for a
    schema error)."""
    doc = draw(served_platform())
    models, teams = doc["serving"]["models"], doc["teams"]
    model = draw(st.sampled_from(models))
    at = f"serving.models[{model['name']}]"
    defect = draw(st.sampled_from(DEFECTS))
    versions_in_use = {r["version"] for r in (model["stable"], model.get("canary"), model.get("shadow")) if r}
    other = draw(versions.filter(lambda v: v not in versions_in_use))
    if defect == "team":
        model["team"] = draw(team_names.filter(lambda n: n not in {t["name"] for t in teams}))
        return doc, f"{at}.team", "model-team-exists"
    if defect == "canary-differs":
        model["canary"] = {"version": model["stable"]["version"], "replicas": 0}
        return doc, f"{at}.canary.version", "canary-differs"
    if defect == "gpu-needs-operator":
        doc.pop("gpu", None)
        model["gpu"] = max(1, model["gpu"])
        return doc, f"{at}.gpu", "gpu-needs-operator"
    if defect == "quota":
        model["stable"]["replicas"] += 1
        if "autoscaling" in model:
            model["autoscaling"]["maxReplicas"] += 1
        [team] = [t for t in teams if t["name"] == model["team"]]
        resource = draw(st.sampled_from(["cpu", "memory", "gpu"] if model["gpu"] else ["cpu", "memory"]))
        cpu, memory, gpus = needs(models, model["team"])
        team["quota"][resource] = {"cpu": f"{cpu - 1}m", "memory": f"{memory - 1}Mi", "gpu": gpus - 1}[resource]
        return doc, f"teams[{team['name']}].quota.{resource}", ("gpu-quota-fits" if resource == "gpu"
                                                                else "serving-quota-fits")
    if defect == "canary-needs-gateway":
        doc.setdefault("network", {})["cilium"] = {"enabled": False}
        doc["serving"].pop("hostname", None)
        model["canary"] = {"version": other, "replicas": 0}
        return doc, f"{at}.canary", "canary-needs-gateway"
    if defect == "serving-needs-monitoring":
        doc["monitoring"] = {"enabled": False}
        return doc, "serving.models", "serving-needs-monitoring"
    if defect == "model-repository-egress":
        model.update(runtime="triton", modelRepository=f"s3://models/{model['name']}")
        model.pop("image", None)
        model.pop("repositoryCidrs", None)
        return doc, f"{at}.modelRepository", "model-repository-egress"
    if defect == "bentoml-image":
        model.update(runtime="bentoml", image=f"registry.corp.internal/ml/{model['name']}:{other}")
        model.pop("modelRepository", None)
        model.pop("repositoryCidrs", None)
        return doc, f"{at}.image", "bentoml-image"
    if defect == "autoscaling-bounds":
        model["stable"]["replicas"] = draw(st.integers(2, 4))
        model["autoscaling"] = {"enabled": True, "maxReplicas": model["stable"]["replicas"] - 1}
        return doc, f"{at}.autoscaling.maxReplicas", "autoscaling-bounds"
    if defect == "serving-hostname":
        doc["serving"]["hostname"] = draw(st.sampled_from(["models.plinth.internal", "a.b.models.plinth.internal",
                                                           "serving.models.corp.internal"]))
        if doc.get("network", {}).get("cilium", {}).get("gatewayApi") is not True:
            return doc, "serving.hostname", "serving-needs-gateway"
        return doc, "serving.hostname", "serving-hostname"
    model["canary"] = {"version": other, "weight": draw(st.integers(101, 10**6))}
    return doc, f"{at}.canary.weight", None


def refused_at(case: tuple[dict, str, str | None]) -> None:
    doc, path, rule = case
    code, err, _ = plan_file(doc)
    assert code == 2, f"expected {path} ({rule}) to be refused:\n{dump(doc)}"
    assert_clean(code, err, ("fuzz.yaml",))
    wanted = [line for line in err.splitlines() if f": {path}: " in line and (rule is None or f"[rule {rule};" in line)]
    assert wanted, f"no error at {path} ({rule}):\n{err}"


@pytest.mark.parametrize("examples", tiers(20))  # refused before the program runs: cheap
def test_a_serving_block_with_one_defect_is_refused_at_its_field(examples):
    check(broken_platform(), examples, refused_at)


# --- hostile YAML (validated: the reader and loader are what is under test) ----------

# A place in the minimal blueprint to put something: (text before, text after).
SPOTS = [("x-junk: ", "\n"), ("metadata:\n  costCenter: ", "\n"), ("teams:\n  - name: fraud\n    quota:\n      cpu: ",
                                                                   "\n"), ("rbac:\n  platformAdminGroup: ", "\n")]


def at_spot(spot: int, value: str) -> str:
    before, after = SPOTS[spot]
    return f"extends: minimal.yaml\n{before}{value}{after}"


@st.composite
def aliased(draw):
    """Anchors and aliases (plain, in flow lists, behind `<<:` merge keys), anywhere."""
    anchor = draw(st.sampled_from(["a", "base", "x"]))
    use = draw(st.sampled_from([f"*{anchor}", f"[*{anchor}, *{anchor}]", f"{{<<: *{anchor}}}"]))
    value = draw(st.sampled_from(["{cpu: '1'}", "[lol, lol]", "fraud", "1"]))
    spot = draw(st.integers(0, len(SPOTS) - 1))
    return f"x-anchor: &{anchor} {value}\n" + at_spot(spot, use)


@st.composite
def deep(draw):
    """Flow or block nesting around the limit, in a spec field or an extension."""
    depth, spot = draw(st.integers(1, MAX_DEPTH + 40)), draw(st.integers(0, len(SPOTS) - 1))
    if draw(st.booleans()):
        opening, closing = draw(st.sampled_from([("[", "]"), ("{a: ", "}")]))
        value = opening * depth + "1" + closing * depth
    else:
        line = SPOTS[spot][0].rsplit("\n", 1)[-1]
        indent = len(line) - len(line.lstrip()) + 2  # each level under the key it nests in
        value = "".join(f"\n{' ' * (indent + 2 * i)}k{i}:" for i in range(depth)) + " 1"
    return at_spot(spot, value)


@st.composite
def huge(draw):
    """Long scalars and numbers: quoted and plain, under and over the file size limit."""
    size = draw(st.sampled_from([1, 50, 101, 5_000, MAX_BYTES + 1]))
    kind = draw(st.sampled_from(["digits", "quoted", "text", "hex", "float"]))
    body = {"digits": "9" * size, "quoted": f"'{'9' * size}'", "text": "a" * size,
            "hex": "0x" + "f" * size, "float": "1." + "9" * size + "e400"}[kind]
    return at_spot(draw(st.integers(0, len(SPOTS) - 1)), body)


unicode_text = st.text(st.characters(blacklist_categories=("Cs",)), max_size=20)


@st.composite
def unicode_docs(draw):
    """Arbitrary unicode keys and values, or bytes that are not UTF-8 at all."""
    if draw(st.integers(0, 4)) == 0:
        return draw(st.binary(max_size=64))
    doc = YAML(typ="safe").load(MINIMAL_TEXT)
    for _ in range(draw(st.integers(1, 3))):
        target = draw(st.sampled_from([doc, doc["metadata"], doc["teams"][0], doc["rbac"]]))
        target[draw(st.sampled_from([draw(unicode_text), "name", "costCenter", "platformAdminGroup"]))] = \
            draw(unicode_text)
    return dump(doc)


@pytest.mark.parametrize("examples", tiers(25))
@pytest.mark.parametrize("strategy", [aliased, deep, huge], ids=["aliases", "nesting", "huge-scalars"])
def test_hostile_yaml_exits_0_or_2(strategy, examples):
    check(strategy(), examples, lambda text: cli_on_files({"minimal.yaml": MINIMAL_TEXT, "fuzz.yaml": text},
                                                          "fuzz.yaml"))


@pytest.mark.parametrize("examples", tiers(40))
def test_unicode_exits_0_or_2(examples):
    check(unicode_docs(), examples, lambda content: cli_on_files({"fuzz.yaml": content}, "fuzz.yaml"))


# --- extends graphs -------------------------------------------------------------------

NAMES = ["a.yaml", "b.yaml", "sub/c.yaml", "sub/d.yaml", "sub/deeper/e.yaml"]


@st.composite
def extends_graphs(draw):
    """Up to five blueprints, in nested directories, each extending another, itself, a directory, a
    missing file, nothing, or not a path at all: chains, cycles and dead ends."""
    files: dict[str, str] = {"base.yaml": MINIMAL_TEXT}
    count = draw(st.integers(1, len(NAMES)))
    for name in NAMES[:count]:
        here = Path(name).parent
        target = draw(st.sampled_from([*NAMES[:count], "base.yaml", "sub", ".", "missing.yaml", None, 7, ""]))
        if isinstance(target, str) and target.endswith(".yaml"):
            target = os.path.relpath(target, here)  # paths are relative to the extending file
        body = draw(st.sampled_from(["", "metadata:\n  environment: prod\n", "teams:\n  - name: fraud\n"
                                     "    $delete: true\n", "teams:\n  - name: new\n"]))
        head = "" if target is None else f"extends: {target!r}\n" if isinstance(target, str) else f"extends: {target}\n"
        files[name] = head + body
    return files, draw(st.sampled_from(NAMES[:count]))


@pytest.mark.parametrize("examples", tiers(40))
def test_extends_graphs_exit_0_or_2(examples):
    check(extends_graphs(), examples, lambda graph: cli_on_files(*graph))


def test_a_long_extends_chain_is_refused_at_its_line(tmp_path, monkeypatch):
    # Beyond the fuzzed sizes: a chain of 200 would recurse once per link.
    monkeypatch.chdir(tmp_path)
    (tmp_path / "b0.yaml").write_text(MINIMAL_TEXT)
    for i in range(1, 200):
        (tmp_path / f"b{i}.yaml").write_text(f"extends: b{i - 1}.yaml\n")
    code, err = run_cli("validate", "b199.yaml")
    assert (code, err) == (2, "b184.yaml:1:1: extends: more than 16 blueprints in one `extends:` chain; merge some "
                              "of them into one file\n1 error\n")
