"""The offline runtime's shortcuts (plinth/engine/offline.py, `_offline_runtime`) change nothing
a plan records: every shipped blueprint and stack plans to the same JSON with and without them
(PLINTH_PLAN_PLAIN=1). The SDK internals they replace are pinned here, so that a Pulumi upgrade
that moves them fails loudly instead of silently bypassing (or breaking) the shortcuts."""

from __future__ import annotations

import asyncio
import gc
import inspect
import json
import random
import typing
from typing import Any

import pulumi
import pulumi.resource as sdk_resource_api
import pulumi_kubernetes as k8s
import pytest
from google.protobuf import json_format, struct_pb2
from pulumi import _types as sdk_types
from pulumi.runtime import _depends_on as sdk_depends_on
from pulumi.runtime import mocks as pulumi_mocks
from pulumi.runtime import resource as sdk_resource
from pulumi.runtime import resource_cycle_breaker, rpc
from pulumi.runtime.proto import resource_pb2
from pulumi.runtime.sync_await import _sync_await

from support import BLUEPRINTS, CONFIGURE_STACKS, ROOT, STACKS
from plinth.engine import offline
from plinth.engine.offline import plan, record
from plinth.plan import Plan
from plinth.provenance import Provenance
from plinth.spec.load import load_spec, load_stack_spec, read_stack, stack_stage

# Every blueprint but the regulated one and the configure stage by default; the platform stacks (the same
# blueprints with their environments' overrides: the same kinds of value through the same shortcuts) in the heavy
# tier, each being a plan on the stock SDK path (3 to 4 times the fast one's time), and the regulated blueprint:
# the stock path grows faster than its resources, 90 s for its 379 (2 to 12 s for the other blueprints).
SLOW_ON_THE_STOCK_PATH = {"onprem-airgap-regulated.yaml"}
CASES = ([pytest.param(("blueprint", p), id=p.name,
                       marks=[pytest.mark.heavy] if p.name in SLOW_ON_THE_STOCK_PATH else [])
          for p in BLUEPRINTS]
         + [pytest.param(("stack", s), id=f"stack-{s}") for s in CONFIGURE_STACKS]
         + [pytest.param(("stack", s), id=f"stack-{s}", marks=pytest.mark.heavy) for s in STACKS])


def _inputs(which):
    """(spec, source, stack, stage, provenance) as `plinth plan` has them."""
    kind, ref = which
    if kind == "blueprint":
        return load_spec(ref), str(ref.relative_to(ROOT)), "offline", "platform", Provenance.of(ref)
    blueprint, _ = read_stack(ROOT, ref)
    return (load_stack_spec(ROOT, ref), f"stack:{ref}", ref, stack_stage(ROOT, ref),
            Provenance.of(blueprint, ROOT / "stacks" / f"Pulumi.{ref}.yaml"))


def test_every_configure_stack_is_planned_as_a_configure_stage():
    assert CONFIGURE_STACKS and all(stack_stage(ROOT, s) == "configure" for s in CONFIGURE_STACKS)


@pytest.mark.parametrize("which", CASES)
def test_the_plan_is_byte_identical_with_and_without_the_offline_runtime(which):
    spec, source, stack, stage, provenance = _inputs(which)
    plain = plan(spec, source, stack=stack, stage=stage, provenance=provenance, fast=False).to_json()
    fast = plan(spec, source, stack=stack, stage=stage, provenance=provenance, fast=True).to_json()
    assert Plan.from_json(plain).resources, "something was planned"
    assert fast == plain


def test_special_values_plan_the_same_both_ways():
    # Secrets, unknowns, nulls, assets and archives (these two take the stock path on a helper thread).
    def program():
        provider = k8s.Provider("k8s")
        thing = pulumi.CustomResource("test:index:Thing", "thing", {
            "asset": pulumi.StringAsset("hello"), "archive": pulumi.AssetArchive({"a": pulumi.StringAsset("x")}),
            "nested": {"secret": pulumi.Output.secret("s"), "none": None, "list": [1, None, "x", 2.5]},
            "providerId": provider.id, "flag": True, "empty": {}, "nothing": [],
        })
        pulumi.CustomResource("test:index:User", "user", {"urn": thing.urn, "nested": thing.nested,
                                                          "asset": thing.asset})
        # An invoke: the stock mock's Invoke pumps an event loop of its own (a helper thread's, fast).
        pulumi.CustomResource("test:index:Caller", "caller",
                              {"answer": pulumi.runtime.invoke_output("test:index:fn", {"a": 1})})

    plans = {fast: Plan("p", "dev", "x", record(program, fast=fast)).to_json() for fast in (False, True)}
    assert plans[True] == plans[False]


def test_outputs_read_before_and_after_their_registration_plan_the_same_both_ways():
    # The fast runtime makes a resource's output only when read (_LazyOutput): read while the program runs
    # (before the registration resolves), read only after it (in an apply), read as a typed value
    # (ObjectMeta) and nested; a secret answered back; a property never read.
    seen = {}

    def program():
        ns = k8s.core.v1.Namespace("ns", metadata={"name": "team-a", "labels": {"team": "a"}})
        secret = k8s.core.v1.Secret("s", metadata={"name": "s", "namespace": "team-a"},
                                    string_data={"k": pulumi.Output.secret("v")})
        later = ns.urn.apply(lambda _: ns.metadata.apply(lambda meta: f"{type(meta).__name__}:{meta.name}"))
        k8s.core.v1.ConfigMap("cm", metadata={"name": ns.metadata.name, "namespace": ns.metadata.apply(
            lambda meta: meta["name"])}, data={"labels": ns.metadata.labels.apply(json.dumps), "later": later,
                                               "secret": secret.string_data.apply(lambda data: data["k"])})
        ns.spec.apply(lambda spec: seen.setdefault(len(seen), spec))  # answered None: unknown, never run

    plans = {fast: Plan("p", "dev", "x", record(program, fast=fast)).to_json() for fast in (False, True)}
    assert plans[True] == plans[False]
    data = next(r for r in Plan.from_json(plans[True]).resources if r.name == "cm").inputs["data"]
    assert data == {"labels": '{"team": "a"}', "later": "ObjectMeta:team-a", "secret": "(secret)"}
    assert seen == {}


def test_a_dependency_cycle_fails_the_same_way_both_ways():
    def program():
        component = pulumi.ComponentResource("test:index:Comp", "comp")
        # A child that depends on its own component depends on itself.
        k8s.core.v1.Namespace("ns", metadata={"name": "ns"},
                              opts=pulumi.ResourceOptions(parent=component, depends_on=[component]))

    for fast in (False, True):
        with pytest.raises(RuntimeError, match="circular dependency"):
            record(program, fast=fast)


def test_two_resources_with_one_urn_fail_the_plan_both_ways():
    """As the real engine refuses them (a name given twice): the offline plan does not record the second."""
    def program():
        component = pulumi.ComponentResource("test:index:Comp", "comp")
        for _ in range(2):
            k8s.core.v1.Namespace("ns", metadata={"name": "ns"}, opts=pulumi.ResourceOptions(parent=component))
        k8s.core.v1.Namespace("ns", metadata={"name": "ns"})  # another parent type: another URN

    for fast in (False, True):
        with pytest.raises(offline.DuplicateResource, match=r"two resources have the URN urn:pulumi:offline::plinth::"
                           r"test:index:Comp\$kubernetes:core/v1:Namespace::ns: each needs a name of its own"):
            record(program, fast=fast)


def test_plinth_plan_plain_selects_the_stock_path(monkeypatch):
    entered = []
    real = offline._offline_runtime

    def spy():
        entered.append(True)
        return real()

    monkeypatch.setattr(offline, "_offline_runtime", spy)

    def program():
        k8s.core.v1.Namespace("ns", metadata={"name": "ns"})

    monkeypatch.setenv("PLINTH_PLAN_PLAIN", "1")
    assert offline.plain_by_default()
    record(program)
    assert entered == []
    monkeypatch.setenv("PLINTH_PLAN_PLAIN", "0")
    assert not offline.plain_by_default()
    record(program)
    assert entered == [True]


@pytest.mark.parametrize("fails", [False, True], ids=["ok", "program-fails"])
def test_the_offline_runtime_is_undone_after_a_run(fails):
    before = [(module, name, getattr(module, name)) for module, name, _ in offline._sdk_patches()]
    loop = asyncio.get_event_loop()

    def program():
        k8s.core.v1.Namespace("ns", metadata={"name": "ns"})
        if fails:
            raise ValueError("boom")

    if fails:
        with pytest.raises(ValueError, match="boom"):
            record(program, fast=True)
    else:
        record(program, fast=True)
    assert all(getattr(module, name) is original for module, name, original in before)
    assert asyncio.get_event_loop() is loop
    assert gc.isenabled()


# --- the replacements answer as the SDK does -----------------------------------------------------


def _replacement(name: str):
    return {attr: replacement for _, attr, replacement in offline._sdk_patches()}[name]


def test_contains_unknowns_answers_as_the_sdks_and_leaves_no_cycle():
    mine = _replacement("contains_unknowns")
    shared = {"a": 1}
    looped: dict = {"x": [1]}
    looped["self"] = looped
    for value in (None, "s", 1, [], {}, [1, {"a": [rpc.UNKNOWN]}], {"a": {"b": pulumi.output.Unknown()}},
                  [shared, shared], looped, {"l": [1, 2, {"u": pulumi.output.Unknown()}]}):
        assert mine(value) == rpc.contains_unknowns(value), value
    gc.collect()
    gc.disable()
    try:
        mine({"a": [1, {"b": 2}]})
        assert gc.collect() == 0  # the SDK's leaves its recursive closure for the collector
    finally:
        gc.enable()


class _Node:
    """Stands in for a Resource: the cycle check only uses identity and one attribute."""


def test_the_cycle_check_answers_as_the_sdks_does():
    rng = random.Random(20)
    for _ in range(600):
        size = rng.randint(1, 30)
        stock, fast = [_Node() for _ in range(size)], [_Node() for _ in range(size)]
        declare = _replacement("declare_dependency")  # a fresh one per graph, as per run
        forwards = rng.random()  # how often a dependency points to a resource made earlier, as programs do
        for _ in range(rng.randint(1, 6 * size)):
            i, j = rng.randrange(size), rng.randrange(size)
            if (i < j) == (rng.random() < forwards):
                i, j = j, i
            assert declare(fast[i], fast[j]) == resource_cycle_breaker.declare_dependency(stock[i], stock[j])
        for s, f in zip(stock, fast):
            assert ({stock.index(d) for d in resource_cycle_breaker._deps(s)}
                    == {fast.index(d) for d in resource_cycle_breaker._deps(f)})


def test_create_urn_gives_the_sdks_urns():
    original = sdk_resource.create_urn
    pairs = []

    def program():
        replacement = sdk_resource.create_urn  # the offline runtime's, during the run
        assert replacement is not original
        for args in [("a", "t:m:T"), ("b", "t:m:T", "urn:pulumi:s::p::t:m:P::parent"), ("c", "t:m:T", ""),
                     ("d", "t:m:T", None, "proj", "stk"), ("e", "t:m:T", None, None, "stk")]:
            pairs.append(pulumi.Output.all(original(*args), replacement(*args)))

    record(program, fast=True)
    for pair in pairs:
        data = pair._data.result()
        assert data.is_known and not data.is_secret and data.resources == set()
        assert data.value[0] == data.value[1]


def _random_value(rng: random.Random, depth: int):
    kind = rng.choice(["str", "num", "bool", "null", "unknown", "secret", "dict", "list"] if depth < 4
                      else ["str", "num", "bool", "null", "unknown"])
    if kind == "str":
        return rng.choice(["", "x", "value", "04da6b54"])
    if kind == "num":
        return rng.choice([0, 1, -3, 2.5, 1e20, 3.0])
    if kind == "bool":
        return rng.random() < 0.5
    if kind == "null":
        return None
    if kind == "unknown":
        return rpc.UNKNOWN
    if kind == "secret":
        return {rpc._special_sig_key: rpc._special_secret_sig, "value": _random_value(rng, depth + 1)}
    if kind == "dict":
        return {f"k{i}": _random_value(rng, depth + 1) for i in range(rng.randint(0, 4))}
    return [_random_value(rng, depth + 1) for _ in range(rng.randint(0, 4))]


def _normal(value):
    """Deserialised values, comparable: Unknown() has no equality of its own."""
    if isinstance(value, dict):
        return {k: _normal(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_normal(v) for v in value]
    return "<unknown>" if isinstance(value, pulumi.output.Unknown) else value


def _keys_in_order(struct) -> list:
    order = []

    def walk(value):
        kind = value.WhichOneof("kind")
        if kind == "struct_value":
            order.append(list(value.struct_value.fields.keys()))
            for item in value.struct_value.fields.values():
                walk(item)
        elif kind == "list_value":
            for item in value.list_value.values:
                walk(item)

    walk(struct_pb2.Value(struct_value=struct))
    return order


_ARGS = (k8s.meta.v1.ObjectMetaArgs, k8s.rbac.v1.RoleArgs, k8s.rbac.v1.PolicyRuleArgs, k8s.rbac.v1.SubjectArgs,
         k8s.networking.v1.NetworkPolicySpecArgs, k8s.meta.v1.LabelSelectorArgs)
# The typing module's own generics on purpose: the SDK's programs and input types use them.
TYPES = (None, Any, dict, str, int, list, typing.Mapping[str, str], typing.Mapping,
         typing.Dict[str, typing.Any], typing.Dict[int, str],  # noqa: UP006
         typing.Optional[typing.Sequence[str]],  # noqa: UP045
         typing.Union[k8s.rbac.v1.SubjectArgs, k8s.meta.v1.ObjectMetaArgs], [1],  # noqa: UP007
         *_ARGS, *(typ for args in _ARGS for typ in sdk_types.input_type_types(args).values()))
"""Declared types of the inputs serialised both ways: none, plain, generic, Kubernetes input types and their
properties' types (as the SDK reads them), unions, and what the SDK refuses (an unhashable one)."""


def test_serialising_inputs_gives_the_sdks_values():
    # The offline runtime's serialize_property (leaves and untyped dicts and lists walked at once) and
    # serialize_properties (held back from the Struct), against the SDK's, on random plain data with and
    # without a key translation, typed and untyped, with outputs (each with a dependency of its own) inside;
    # an input of a type the SDK refuses fails the same way.
    patches = {name: replacement for _, name, replacement in offline._sdk_patches()}
    rng = random.Random(11)

    def with_outputs(value, depth=0):
        if rng.random() < 0.1:
            return "output", value, depth, object()  # made into an Output inside the loop
        if isinstance(value, dict) and rpc._special_sig_key not in value:
            return {key: with_outputs(item, depth + 1) for key, item in value.items()}
        if isinstance(value, list):
            return [with_outputs(item, depth + 1) for item in value]
        return value

    corpus = [{f"p{i}": with_outputs(_random_value(rng, 0)) for i in range(rng.randint(1, 5))} for _ in range(300)]
    corpus += [{"name": "a", "namespace": "b", "labels": {"team": "a"}, "apiGroups": [""], "verbs": ["get"],
                "resources": ("pods",), "annotations": None, "resource_names": ["x"], "generate_name": "g"},
               {"generate_name": "g", "name": "n"}]
    corpus += [{"t": ("a", 1), "n": [{"x": (None,)}]}, {"s": {rpc._special_sig_key: "other", "v": 1}}]

    async def compare(props):
        def settled(value):
            future = asyncio.get_running_loop().create_future()
            future.set_result(value)
            return future

        def made(value):
            if isinstance(value, tuple) and value[:1] == ("output",):
                return pulumi.Output({value[3]}, settled(made(value[1])), settled(True))
            if isinstance(value, dict):
                return {key: made(item) for key, item in value.items()}
            if isinstance(value, list):
                return [made(item) for item in value]
            return value

        async def serialised(serialize, value, translate, typ):
            deps: list = []
            try:
                result = await serialize(value, deps, "k", None, translate, typ)
            except Exception as exn:  # noqa: BLE001 (compared)
                return "error", type(exn), str(exn)
            return json.dumps(result), deps  # key order too

        inputs = made(props)
        for translate in (None, str.upper):
            for typ in TYPES:
                for value in (inputs, list(inputs.values())):
                    stock = await serialised(rpc.serialize_property, value, translate, typ)
                    assert await serialised(patches["serialize_property"], value, translate, typ) == stock
            stock_deps: dict = {}  # type: ignore[no-redef]
            stock = await rpc.serialize_properties(inputs, stock_deps, object(), translate)
            fast_deps: dict = {}  # type: ignore[no-redef]
            held = offline._HELD.take(await patches["serialize_properties"](inputs, fast_deps, object(), translate))
            assert held is not None and fast_deps == stock_deps
            offline._restore(held, struct := struct_pb2.Struct(fields={offline._HELD.KEY: struct_pb2.Value()}))
            assert struct == stock == held.struct

    loop = asyncio.new_event_loop()
    try:
        for props in corpus:
            loop.run_until_complete(compare(props))
    finally:
        loop.close()
    for refused in ({"bad": object()}, {"nested": [{"bad": object()}]}):
        errors = []
        for serialize in (rpc.serialize_properties, patches["serialize_properties"]):
            with pytest.raises(ValueError) as error:
                offline._run_without_suspending(serialize(refused, {}, object()))
            errors.append(str(error.value))
        assert errors[0] == errors[1]


def test_the_fast_monitor_answers_and_records_as_the_stock_one():
    # The stock MockMonitor's deserialise -> mocks -> serialise round trip against _echo's, on
    # plain data with secrets, unknowns and nulls anywhere (settings of a finished preview run).
    record(lambda: None, fast=False)
    rng = random.Random(7)
    corpus = [{}, {"a": None}, {"a": {"b": None}}, {"a": [None]}, {"s": {rpc._special_sig_key: rpc._special_secret_sig,
                                                                        "value": None}}]
    corpus += [{f"p{i}": _random_value(rng, 0) for i in range(rng.randint(1, 5))} for _ in range(400)]
    monitor = offline._FastRecordingMonitor(offline._EchoMocks())
    for props in corpus:
        struct = struct_pb2.Struct()
        struct.update(props)
        request = resource_pb2.RegisterResourceRequest(type="test:index:T", name="t", custom=True, object=struct)
        stock_state = rpc.deserialize_properties(request.object)
        stock_answer = _sync_await(rpc.serialize_properties(stock_state, {}))
        inputs, resource_id, state, answer = monitor._echo(request)
        assert inputs == json_format.MessageToDict(request.object)
        assert resource_id is None and _normal(state) == _normal(stock_state)
        # Equal, and equal in key order too (a map's order shows in the outputs' dicts).
        assert answer == stock_answer and _keys_in_order(answer) == _keys_in_order(stock_answer)


# --- the SDK still has the shape the offline runtime patches -------------------------------------


def test_the_sdk_still_has_the_shape_the_offline_runtime_patches():
    """Fails when a Pulumi upgrade moves what plinth/engine/offline.py's `_offline_runtime` replaces:
    re-check each shortcut against the new SDK before adjusting this test."""
    for module, name, replacement in offline._sdk_patches():
        original = getattr(module, name)
        assert callable(original), f"{module.__name__}.{name} is gone"
        if inspect.isfunction(replacement):
            want = [(p.kind, p.default is p.empty) for p in inspect.signature(replacement).parameters.values()]
            have = [(p.kind, p.default is p.empty) for p in inspect.signature(original).parameters.values()]
            assert have == want, f"{module.__name__}.{name} changed its signature"
    assert inspect.signature(sdk_resource._get_stack_trace).parameters == {}

    # The call sites still look the replaced functions up where they are replaced.
    assert "declare_dependency(from_resource, res)" in inspect.getsource(rpc._add_dependency)
    assert resource_cycle_breaker._DEPENDENCIES_PROPERTY == "_direct_computed_dependencies"
    assert "getattr(res, _DEPENDENCIES_PROPERTY, set())" in inspect.getsource(resource_cycle_breaker._deps)
    register = inspect.getsource(sdk_resource.register_resource)
    for call in ("_get_stack_trace()", "create_urn(name, ty, resolver.parent_urn)", "run_in_executor(",
                 "monitor.RegisterResource(req)"):
        assert call in register, call
    assert "collapse_alias_to_urn(alias, name, t, opts.parent)" in inspect.getsource(sdk_resource_api.Resource.__init__)
    assert "_types.unwrap_type(typ)" in inspect.getsource(rpc.serialize_property)
    # A resource's inputs are serialised where the held Struct is made, and that Struct is read where restored (12.).
    assert "rpc.serialize_properties(\n        props,\n        property_dependencies_resources,\n        res," in (
        inspect.getsource(sdk_resource.prepare_resource))
    assert "object=resolver.serialized_props" in register
    assert "properties=resolver.serialized_props" in inspect.getsource(sdk_resource.read_resource)
    loop = inspect.getsource(rpc.serialize_properties)
    for step in ("if result is not None:", "struct[translated_name] = result", "property_deps[translated_name] = deps",
                 "get_type = lambda k: types.get(translate(k))"):
        assert step in loop, step
    # Resolving a resource's depends_on looks the replaced step up in its module (14.).
    assert "await _resolve_depends_on(depends_on)" in inspect.getsource(sdk_depends_on._resolve_depends_on_urns)
    # The SDK logs through the module, so its debug lines go where the offline runtime sends them (13.).
    assert "log.debug(" in register and "from .. import _types, log" in inspect.getsource(sdk_resource)
    assert "rpc.contains_unknowns(val)" in inspect.getsource(pulumi.output.contains_unknowns)
    # `_aliases` (what collapse_alias_to_urn feeds) is read only where alias specs are not supported.
    assert "if supports_alias_specs:" in inspect.getsource(sdk_resource.prepare_aliases)
    assert pulumi_mocks.MockMonitor.GetDeploymentInfo is offline._FastRecordingMonitor.GetDeploymentInfo
    features = pulumi_mocks.MockMonitor(offline._EchoMocks()).GetDeploymentInfo(None).supportedFeatures
    assert resource_pb2.RESOURCE_MONITOR_FEATURE_ALIAS_SPECS in features

    # The stock mock round trip the fast monitor reproduces, and the echo it relies on.
    stock = inspect.getsource(pulumi_mocks.MockMonitor.RegisterResource)
    for step in ("rpc.deserialize_properties(request.object)", "self.mocks.new_resource(resource_args)",
                 "rpc.serialize_properties(state, {})", "self.resources[urn] = MockMonitor.ResourceRegistration"):
        assert step in stock, step
    assert offline._EchoMocks().new_resource(pulumi_mocks.MockResourceArgs("t", "n", inputs := {"a": 1}))[1] is inputs

    # run_in_executor hands an asyncio future from the executor back as it is (the inline executor).
    loop = asyncio.new_event_loop()
    try:
        executor = offline._InlineExecutor(loop)
        loop.set_default_executor(executor)
        future = loop.run_in_executor(None, lambda: 42)
        assert asyncio.isfuture(future) and future.done() and future.result() == 42
    finally:
        loop.close()
    assert sdk_types.unwrap_type(pulumi.Output[str]) is str
    # The SDK gives a leaf back as it is, whatever the type it is declared with (11.).
    for leaf in ("text", rpc.UNKNOWN, "", True, False, 0, 7, 2**70, 2.5, None):
        assert type(leaf) in offline._LEAVES
        for typ in (None, str, int, dict, list, pulumi.Input[str], Any):
            assert offline._run_without_suspending(rpc.serialize_property(leaf, [], "key", None, None, typ)) is leaf
