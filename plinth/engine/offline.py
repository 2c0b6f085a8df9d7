"""The offline engine: the real program under Pulumi's mock runtime, recorded into a Plan.

No cloud account, no cluster, no network. The mock monitor sees every
registration (type, name, parent, dependencies, provider, inputs) before the
mocks answer; resources echo their inputs as outputs, so values derived from
inputs resolve and values only a deployment knows stay unknown.

Speed: by default the engine runs with the shortcuts of `_offline_runtime`
(see there) and the lean `_FastRecordingMonitor`; `PLINTH_PLAN_PLAIN=1` (or
`fast=False`) runs the stock SDK path instead. Both record the same plan
(tests/test_plan_identity.py).
"""

from __future__ import annotations

import asyncio
import atexit
import concurrent.futures
import contextlib
import contextvars
import functools
import gc
import itertools
import math
import os
import signal
import threading
import warnings
from collections import abc
from collections.abc import Callable, Iterator
from typing import Any, get_args, get_origin

import pulumi
import pulumi.resource as sdk_resource_api
from google.protobuf import json_format, struct_pb2
from pulumi import _types as sdk_types
from pulumi.output import Unknown, _OutputData
from pulumi.runtime import _depends_on as sdk_depends_on
from pulumi.runtime import mocks as pulumi_mocks
from pulumi.runtime import resource as sdk_resource
from pulumi.runtime import resource_cycle_breaker, rpc
from pulumi.runtime.proto import resource_pb2, source_pb2
from pulumi.runtime.settings import SETTINGS, is_dry_run, is_legacy_apply_enabled, monitor_supports_feature
from pulumi.runtime.stack import run_pulumi_func
from pulumi.runtime.sync_await import _ensure_event_loop, _sync_await

from plinth.context import StackSecret, StackSecrets
from plinth.plan import SECRET, UNKNOWN, Plan, Resource
from plinth.program import STAGES, needed_secrets
from plinth.provenance import Provenance
from plinth.spec.models import PlatformSpec

PROJECT = "plinth"
_THREAD_LOOPS: set[asyncio.AbstractEventLoop] = set()


@atexit.register
def _close_thread_loops() -> None:
    for loop in _THREAD_LOOPS:
        loop.close()


class DuplicateResource(Exception):
    """The program declared two resources with one URN (a name given twice): no engine deploys that."""


class _EchoMocks(pulumi_mocks.Mocks):
    """Resources return their inputs; IDs stay unknown, as in a preview."""

    def new_resource(self, args: pulumi_mocks.MockResourceArgs) -> tuple[str | None, dict]:
        return None, args.inputs

    def call(self, args: pulumi_mocks.MockCallArgs) -> dict:  # type: ignore[override]  # the SDK takes either
        return {}


class _RecordingMonitor(pulumi_mocks.MockMonitor):
    def __init__(self, mocks: pulumi_mocks.Mocks, on_record: Callable[[Resource], None] | None = None):
        super().__init__(mocks)
        self.on_record = on_record
        self.records: list[Resource] = []
        self._urns: set[str] = set()
        self._lock = threading.Lock()

    def make_urn(self, parent: str, type_: str, name: str) -> str:
        # As the real engine does: the qualified type chains every ancestor's type
        # except the stack's (the mock keeps only the parent's own type).
        if parent and not _is_stack(parent):
            type_ = parent.split("::")[2] + "$" + type_
        return f"urn:pulumi:{pulumi.get_stack()}::{pulumi.get_project()}::{type_}::{name}"

    def RegisterResource(self, request):  # noqa: N802 (gRPC method name)
        # The SDK calls the monitor from pooled worker threads, each with an event
        # loop of its own that later runs reuse; close them once, at exit, rather
        # than letting the interpreter's teardown trip over them.
        if threading.current_thread() is not threading.main_thread():
            with self._lock:
                _THREAD_LOOPS.add(_ensure_event_loop())
        response = super().RegisterResource(request)
        if request.type != _STACK:
            self._record(request, response.urn, json_format.MessageToDict(request.object))
        return response

    def _record(self, request, urn: str, inputs: dict) -> None:
        """Keep one registration; `inputs` is the request's property Struct as JSON (json_format's mapping)."""
        record = Resource(
            urn=urn,
            type=request.type,
            name=request.name,
            parent=request.parent if request.parent and not _is_stack(request.parent) else None,
            custom=bool(request.custom),
            dependencies=tuple(sorted(set(request.dependencies))),
            # A provider reference is "<urn>::<id>"; the id is unknown offline.
            provider=request.provider.rsplit("::", 1)[0] if request.provider else None,
            inputs=_clean(inputs),
            retained=request.retainOnDelete,
        )
        with self._lock:
            if urn in self._urns:  # as the real engine refuses it, at `pulumi up` and already at preview
                raise DuplicateResource(f"two resources have the URN {urn}: each needs a name of its own")
            self._urns.add(urn)
            self.records.append(record)
            if self.on_record:
                self.on_record(record)


class _FastRecordingMonitor(_RecordingMonitor):
    """The recording monitor, called on the event loop's own thread (see _offline_runtime), without
    the stock mock's detours: the same requests in, the same responses and records out.

    For every registration the stock MockMonitor deserialises the inputs, hands them to the mocks
    and serialises the answer back (running the SDK's serialize_properties coroutine on an event
    loop of its own), and the recorder converts the request with json_format. Here one walk over
    the request (`_struct_json`) gives the record's JSON and tells whether the request is plain
    data: JSON values and unknowns, without secrets or null fields. On plain data the stock round
    trip gives back the same values, so when the mocks echo the inputs (ours do) the answer is
    built from that JSON, key by key as serialize_properties builds it (same Struct, same key
    order). Requests with secrets or null fields take the SDK's deserialize_properties and
    serialize_properties (driven directly: on such data it never waits for anything); anything
    else (assets, archives, resource references, output values), and the calls that pump an event
    loop of their own (Invoke, ReadResource), go the stock way on a helper thread, as the plain
    engine's worker threads do. tests/test_plan_identity.py checks the round trip against the SDK.
    """

    def __init__(self, mocks: pulumi_mocks.Mocks, on_record: Callable[[Resource], None] | None = None):
        super().__init__(mocks, on_record)
        self._helper: concurrent.futures.ThreadPoolExecutor | None = None

    def _on_helper(self, call: Callable, request):
        if self._helper is None:
            self._helper = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="plinth-monitor")
        return self._helper.submit(contextvars.copy_context().run, call, request).result()

    def close(self) -> None:
        if self._helper is not None:
            self._helper.shutdown()

    def RegisterResource(self, request):  # noqa: N802 (gRPC method name)
        if request.type == _STACK:
            return pulumi_mocks.MockMonitor.RegisterResource(self, request)
        held = _HELD.take(request.object)
        try:
            inputs, resource_id, state, answer = self._echo(request, build=False, held=held)
        except _NotPlain:
            _restore(held, request.object)
            return self._on_helper(super().RegisterResource, request)
        urn = self.make_urn(request.parent, request.type, request.name)
        self.resources[urn] = pulumi_mocks.MockMonitor.ResourceRegistration(urn, resource_id, state)
        self._record(request, urn, inputs)
        if answer is None:  # the answer is the inputs: handed to resolve_outputs as they are (8. below)
            _ECHO.put(request, state)
            answer = struct_pb2.Struct()
        return resource_pb2.RegisterResourceResponse(urn=urn, id=resource_id, object=answer)

    def _echo(self, request, build: bool = True, held: _Held | None = None):
        """(record JSON, mock state, answer Struct) as the stock monitor would have them. With `build` off, no
        answer (None) where the answer is the deserialised inputs themselves (the state). `held`: the inputs
        serialize_properties held back (12.), restored into the request unless the answer is that echo."""
        impure: list[str] = []  # what keeps the round trip from being the identity
        # First: raises _NotPlain before anything runs.
        inputs = _struct_json(request.object, impure) if held is None else _plain_json(held.props, impure)
        plain = not impure and pulumi.runtime.is_dry_run()
        if not plain:
            _restore(held, request.object)
        deserialized = _deserialized(inputs) if plain else rpc.deserialize_properties(request.object)
        resource_id, state = self.mocks.new_resource(pulumi_mocks.MockResourceArgs(
            typ=request.type, name=request.name, inputs=deserialized, provider=request.provider,
            resource_id=request.importId, custom=request.custom or False,
            transforms=pulumi_mocks._resolve_callbacks(request.transforms)))
        echo = plain and state is deserialized
        if echo and not build:
            return inputs, resource_id, state, None
        _restore(held, request.object)  # the SDK's resolve_outputs reads the Struct from here on
        if echo:
            answer = struct_pb2.Struct()
            answer.update(inputs)
        else:
            answer = _run_without_suspending(rpc.serialize_properties(state, {}))
        return inputs, resource_id, state, answer

    def Invoke(self, request):  # noqa: N802 (gRPC method name)
        return self._on_helper(super().Invoke, request)

    def ReadResource(self, request):  # noqa: N802 (gRPC method name)
        _restore(_HELD.take(request.properties), request.properties)
        return self._on_helper(super().ReadResource, request)


class _NotPlain(Exception):
    """A registration the fast monitor leaves to the stock path."""


def _struct_json(struct, impure: list[str]) -> dict:
    """json_format.MessageToDict of a property Struct; notes in `impure` the secrets and null fields
    (which the stock round trip rewrites); raises _NotPlain for any other special value."""
    fields = struct.fields
    if _SIG in fields:
        sig = fields[_SIG]
        if sig.WhichOneof("kind") != "string_value" or sig.string_value != rpc._special_secret_sig:
            raise _NotPlain
        impure.append("secret")
    out = {key: _value_json(value, impure) for key, value in fields.items()}
    if None in out.values():
        impure.append("null")
    return out


def _value_json(value, impure: list[str]) -> Any:
    kind = value.WhichOneof("kind")
    if kind == "string_value":
        return value.string_value
    if kind == "struct_value":
        return _struct_json(value.struct_value, impure)
    if kind == "list_value":
        return [_value_json(item, impure) for item in value.list_value.values]
    if kind == "bool_value":
        return value.bool_value
    if kind == "number_value":
        number = value.number_value
        if math.isinf(number) or math.isnan(number):
            json_format.MessageToDict(value)  # refuses them, with its own error
        return number
    if kind == "null_value":
        return None
    raise _NotPlain  # a Value with nothing set: left to the stock path


def _plain_json(props: dict, impure: list[str]) -> dict:
    """_struct_json of the Struct that serialize_properties would have made of `props` (12.), but in the
    program's key order: a number is a double, as in a Struct."""
    if _SIG in props:
        if props[_SIG] != rpc._special_secret_sig:
            raise _NotPlain
        impure.append("secret")
    out = {}
    for key, value in props.items():
        if type(key) is not str:
            raise _NotPlain  # the SDK's Struct refuses it, with its own error
        out[key] = item = _plain_value(value, impure)
        if item is None:
            impure.append("null")
    return out


def _plain_value(value: Any, impure: list[str]) -> Any:
    kind = type(value)
    if kind is str or kind is bool or value is None:
        return value
    if kind is dict:
        return _plain_json(value, impure)
    if kind is list:
        return [_plain_value(item, impure) for item in value]
    if kind is int or kind is float:
        try:
            number = float(value)
        except OverflowError:
            raise _NotPlain from None
        if math.isinf(number) or math.isnan(number):
            raise _NotPlain  # json_format refuses it, with its own error
        return number
    raise _NotPlain


def _deserialized(value: Any) -> Any:
    """rpc.deserialize_properties of plain data (no secrets, no null fields) in a preview, from its JSON."""
    if isinstance(value, dict):
        return {key: _deserialized(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_deserialized(item) for item in value]
    if value == rpc.UNKNOWN:
        return Unknown()
    return value


def _run_without_suspending(coroutine) -> Any:
    """The result of a coroutine that completes without waiting (else _NotPlain)."""
    try:
        coroutine.send(None)
    except StopIteration as done:
        return done.value
    coroutine.close()
    raise _NotPlain


_SIG = rpc._special_sig_key
_STACK = "pulumi:pulumi:Stack"


def _is_stack(urn: str) -> bool:
    return urn.split("::")[2] == _STACK


def _clean(value: Any) -> Any:
    """Wire values to plan values: secrets and unknowns become explicit placeholders."""
    if isinstance(value, dict):
        sig = value.get(rpc._special_sig_key)
        if sig == rpc._special_secret_sig:
            return SECRET
        if sig == rpc._special_resource_sig:
            return {"resource": value.get("urn")}
        return {k: _clean(v) for k, v in sorted(value.items())}
    if isinstance(value, list):
        return [_clean(v) for v in value]
    if value == rpc.UNKNOWN:
        return UNKNOWN
    if isinstance(value, float) and value.is_integer():
        return int(value)  # protobuf Struct carries every number as a double
    return value


def record(program: Callable[[], None], stack: str = "offline", config: dict[str, str] | None = None,
           secret_keys: tuple[str, ...] = (), on_record: Callable[[Resource], None] | None = None,
           fast: bool | None = None, mocks: pulumi_mocks.Mocks | None = None) -> tuple[Resource, ...]:
    """Run `program` under the mock runtime with the given stack config; every registration, by URN.

    `on_record` is called with each resource as it is recorded (a terminal shows the count; a render starts
    each chart then). `fast` (default: on unless PLINTH_PLAN_PLAIN=1) runs with the offline shortcuts of
    `_offline_runtime`; the plan is the same.
    `mocks` (tests): what resources answer, instead of their inputs alone.
    """
    fast = not plain_by_default() if fast is None else fast
    monitor = (_FastRecordingMonitor if fast else _RecordingMonitor)(mocks or _EchoMocks(), on_record)
    with _offline_runtime() if fast else contextlib.nullcontext():
        pulumi.runtime.set_mocks(monitor.mocks, project=PROJECT, stack=stack, preview=True, monitor=monitor)
        pulumi.runtime.set_all_config(config or {}, list(secret_keys))
        SETTINGS.rpc_manager.clear()
        SETTINGS.outputs.clear()
        try:
            _sync_await(run_pulumi_func(program))
        finally:
            if fast:
                monitor.close()  # type: ignore[attr-defined]  # the fast monitor
    return tuple(sorted(monitor.records, key=lambda r: r.urn))


PLAIN_ENV = "PLINTH_PLAN_PLAIN"
"""Set to 1 to run the offline engine on the stock SDK path, without `_offline_runtime`'s shortcuts."""


def plain_by_default() -> bool:
    return os.environ.get(PLAIN_ENV, "").strip().lower() not in ("", "0", "false", "no")


# --- The offline runtime: the one place the engine changes how the Pulumi SDK runs ---------------
#
# Everything below is applied only while a fast `record` runs, and undone after it (also on error).
# It changes nothing the program declares or the plan records (tests/test_plan_identity.py plans
# every shipped blueprint and stack both ways and compares the JSON byte for byte), and nothing
# outside the offline engine: the real engine (platform/__main__.py) never enters it. The SDK
# internals it replaces are checked by tests/test_plan_identity.py::test_the_sdk_still_has_the_shape_
# the_offline_runtime_patches, which fails loudly when a Pulumi upgrade changes them.
#
# 1. An event loop of its own whose default executor runs each "RPC" at once, on the loop's thread
#    (`_InlineExecutor`). The SDK sends every monitor call through `loop.run_in_executor`, made
#    for a gRPC engine in another process; the mock monitor answers in-process without blocking,
#    so the worker threads bought only handoffs, wake-ups and GIL contention. Monitor calls that
#    pump an event loop themselves go to a helper thread (`_FastRecordingMonitor._on_helper`).
# 2. `pulumi.runtime.rpc.declare_dependency` (the dependency-cycle check behind every dependency,
#    `resource_cycle_breaker`): the same answer and the same recorded graph, without walking all
#    that the dependency depends on, with nested generators, for every edge (a cost that grows
#    with the depth of the graph times its size: half the regulated blueprint's time). It keeps a
#    topological order instead, so most checks need no walk at all (see declare_dependency below).
# 3. `pulumi.runtime.resource._get_stack_trace`: an empty trace. It captures the Python stack
#    (traceback.extract_stack, with source lines) of every resource constructor for the engine's
#    diagnostics (RegisterResourceRequest.stackTrace/sourcePosition); the mock monitor drops it.
# 4. `pulumi.runtime.resource.create_urn`, for plain strings only: the same URN as a known Output
#    without the Output.all/apply task chain. `register_resource` computes one for every resource
#    (`mock_urn`), used only when there is no monitor at all.
# 5. `pulumi.resource.collapse_alias_to_urn`, while the monitor supports alias specs (ours does):
#    the alias is kept as given. Resource.__init__ turns every alias into a URN Output chain (the
#    Kubernetes SDK gives each RBAC object two); those URNs are read only by `all_aliases`, for
#    engines without alias specs. The aliases still reach the request as specs (prepare_aliases).
# 6. The cyclic garbage collector is paused for the run (reference counting still frees at once
#    everything not in a cycle). A run builds hundreds of thousands of objects (outputs, futures,
#    tasks, protobuf messages) that live until it ends; the collector kept re-scanning them,
#    finding little to free: about 40% of the run. When a large run ends (`_FREEZE_AT`) its
#    objects are frozen (gc.freeze) rather than scanned once more: a `plinth` command exits right
#    after, and that scan plus the interpreter's own at exit cost 40% of the run again. The next
#    fast run unfreezes and collects them first, so a long-lived process keeps at most one large
#    run's garbage; after a small run (a test's) the collector just resumes. No freezing if the
#    caller froze objects itself; nothing at all if it turned the collector off.
# 7. `pulumi._types.unwrap_type`, remembered per type for the run. serialize_property asks it for
#    every input value; its answer depends on the type alone (typing introspection).
# 8. `pulumi.runtime.rpc.transfer_properties`: each output property of a resource is a `_LazyOutput`,
#    which makes its future, and converts the value the monitor answered into it, only when something
#    reads it. The SDK makes an Output (a task and four futures) for every property of every resource
#    and converts every answered value into the output types at once, though a program reads few of
#    them (a namespace's name, a secret's): a quarter of a large plan's time and a third of its memory.
# 9. `pulumi.runtime.rpc.resolve_outputs`, for a registration the fast monitor answered with its own
#    inputs (`_ECHO`, the mocks echo): the deserialised inputs are taken as they are, not serialised
#    into an answer Struct to be deserialised again (the same values: see `_FastRecordingMonitor`).
# 10. `pulumi.runtime.rpc.contains_unknowns`, asked of every Output's value: the same walk, without the
#    recursive closure the SDK defines at each call. A closure that calls itself is a reference cycle, which
#    only the paused collector (6.) would free: a plan kept every one (a fifth of 1,000 teams' memory).
# 11. `pulumi.runtime.rpc.serialize_property`, for a str, bool, int, float or None: the value itself, which
#    is what the SDK returns for one after ten type checks (nothing else it tests for is one of those types).
#    Most of the values a plan serialises are such leaves: a third of 1,000 teams' time went to the checks.
#    A dict or list is walked as the SDK walks it, without a coroutine per leaf: how a declared type walks
#    (its items' types, its keys' translation) is worked out once per type, and the SDK's own walk kept for
#    a union whose member depends on the value.
# 12. `pulumi.runtime.rpc.serialize_properties`, for a resource's inputs: the same loop (each input serialised,
#    translated, left out if None, its dependencies noted), into a dict held back (`_HELD`) behind a token Struct.
#    The fast monitor takes the dict by that token and reads it as it would have read the Struct (`_plain_json`),
#    so no Struct is built and walked back for a registration the mocks echo. Wherever a Struct is read (the
#    stock path, an answer that is not the echo, ReadResource), it is first filled (`_restore`). One difference,
#    in what no plan shows: the echoed outputs' dicts keep the program's key order, not the Struct's hash order.
# 13. `pulumi.log.debug`: nothing. The SDK sends a debug line to the engine at each step of every registration;
#    the mock engine hands them to a Python logger at debug level, which nothing in Plinth shows (5% of the run).
#    The resolved outputs' types (9.), read from a resource class's annotations, are kept per class for the run.
# 14. `pulumi.runtime._depends_on._resolve_depends_on`, for a plain list of resources (`depends_on=[namespace]`,
#    the common case): the resources themselves, which is what the SDK finds after wrapping the list and each
#    resource in an Output and awaiting each.
# 15. Ctrl-C (SIGINT, on the main thread) stops the run's event loop between callbacks, and the run raises
#    KeyboardInterrupt (`_stop_on_interrupt`). Python's own handler raises it wherever the thread is, which can be
#    inside the SDK's bookkeeping of a registration: the run then waited forever for that registration.


def _sdk_patches() -> list[tuple[Any, str, Any]]:
    """(module, attribute, replacement) for this run: see the list above."""
    original_create_urn = sdk_resource.create_urn
    dependents: dict = {}  # resource -> the resources that declared a dependency on it, this run
    position: dict = {}  # resource -> place in an order where every dependency points to a later place
    fresh = itertools.count(0, -1)  # a resource first seen goes first: it usually depends on older ones

    def declare_dependency(from_resource, to_resource) -> bool:
        # resource_cycle_breaker.declare_dependency: refuse (False) when `to_resource` already
        # reaches `from_resource` (itself included), else record from -> to. The SDK walks all
        # that `to_resource` depends on, every time. Here the resources keep a topological order
        # (Pearce and Kelly's dynamic one): when `from_resource` already comes first, nothing
        # `to_resource` reaches can be `from_resource` and no walk is needed; otherwise only the
        # resources placed between the two are searched, and reordered.
        if to_resource is from_resource:
            return False
        low = position.get(from_resource)
        if low is None:
            low = position[from_resource] = next(fresh)
        high = position.get(to_resource)
        if high is None:
            high = position[to_resource] = next(fresh)
        if low > high:
            ahead, todo = {to_resource}, [to_resource]  # what to_resource reaches, placed up to low
            while todo:
                for dep in getattr(todo.pop(), _DEPENDENCIES, ()):
                    if dep is from_resource:
                        return False
                    if dep not in ahead and position[dep] < low:
                        ahead.add(dep)
                        todo.append(dep)
            behind, todo = {from_resource}, [from_resource]  # what reaches from_resource, placed from high
            while todo:
                for dependent in dependents.get(todo.pop(), ()):
                    if dependent not in behind and position[dependent] > high:
                        behind.add(dependent)
                        todo.append(dependent)
            places = sorted(position[r] for r in (*behind, *ahead))
            moved = sorted(behind, key=position.__getitem__) + sorted(ahead, key=position.__getitem__)
            for resource, place in zip(moved, places):
                position[resource] = place
        deps = getattr(from_resource, _DEPENDENCIES, None)
        if deps is None:
            setattr(from_resource, _DEPENDENCIES, {to_resource})
        else:
            deps.add(to_resource)
        dependents.setdefault(to_resource, set()).add(from_resource)
        return True

    def create_urn(name, type_, parent=None, project=None, stack=None):
        if not (isinstance(name, str) and isinstance(type_, str)
                and all(arg is None or isinstance(arg, str) for arg in (parent, project, stack))):
            return original_create_urn(name, type_, parent, project, stack)
        if parent is not None:
            prefix = parent[0:parent.rfind("::")] + "$"
        else:
            stack = pulumi.get_stack() if stack is None else stack
            project = pulumi.get_project() if project is None else project
            prefix = "urn:pulumi:" + stack + "::" + project + "::"
        return pulumi.Output.from_input(prefix + type_ + "::" + name)

    original_collapse = sdk_resource_api.collapse_alias_to_urn

    def collapse_alias_to_urn(alias, default_name, default_type, default_parent):
        if monitor_supports_feature(resource_pb2.RESOURCE_MONITOR_FEATURE_ALIAS_SPECS):
            return alias
        return original_collapse(alias, default_name, default_type, default_parent)

    original_unwrap_type = sdk_types.unwrap_type
    unwrapped: dict = {}

    def unwrap_type(typ):
        try:
            return unwrapped[typ]
        except KeyError:
            result = unwrapped[typ] = original_unwrap_type(typ)
            return result
        except TypeError:  # not hashable
            return original_unwrap_type(typ)

    original_resolve_outputs = rpc.resolve_outputs
    class_types: dict = {}  # resource class -> (its properties' types, its Pulumi names' Python names)

    def resolve_outputs(res, serialized_props, outputs, deps, resolvers, custom, transform_using_type_metadata=False,
                        keep_unknowns=False, resolve_missing_as_unknown=False):
        echoed = _ECHO.take(res)
        if echoed is None or not is_dry_run() or is_legacy_apply_enabled():
            return original_resolve_outputs(res, serialized_props, outputs, deps, resolvers, custom,
                                            transform_using_type_metadata, keep_unknowns, resolve_missing_as_unknown)
        # As the SDK resolves a preview's outputs: keys translated (the last of two alike wins), each value
        # translated into the property's output type, unwrapped if secret, known unless None; a property
        # not answered resolves unknown. Here the translation waits until the output is read (8.).
        cls = type(res)
        if cls not in class_types:  # what the SDK reads from the class's annotations, every time
            class_types[cls] = (sdk_types.resource_types(cls), sdk_types.resource_pulumi_to_py_names(cls))
        types, names = class_types[cls]
        translate = to_pass = res.translate_output_property
        if transform_using_type_metadata:
            translate, to_pass = (lambda prop: names.get(prop) or prop), (lambda prop: prop)
        answered = {translate(key): (key, value) for key, value in echoed.items()}
        dependencies = {translate(key): value for key, value in deps.items()}
        for key, resolve in resolvers.items():
            if key not in answered:
                resolve(None, False, False, dependencies.get(key), None)
                continue
            raw_key, value = answered[key]
            convert = functools.partial(_output_value, value, to_pass, types.get(raw_key),
                                        transform_using_type_metadata, key, res._name)
            if isinstance(getattr(resolve, "__self__", None), _LazyOutput):
                resolve.__self__.settle(convert, dependencies.get(key))
            else:
                resolve(*convert(), dependencies.get(key), None)

    original_serialize_property = rpc.serialize_property
    shapes: dict = {}

    def shape_of(typ: Any, kind: type) -> Any:
        """How serialize_property walks a dict or list declared `typ`: for a list, its items' type; for a dict,
        (keys, item_type): keys None (kept), _TRANSFORMED (by input_transformer) or an input type's names;
        item_type(translated key) each item's type. _SDK where the SDK's own walk is needed: a union whose
        member depends on the value, an unhashable type (as the SDK's cache of unwrapped types needs)."""
        known = shapes.get((id(typ), kind))  # by identity: hashing a typing generic walks all of it
        if known is not None and known[0] is typ:  # the cache holds `typ`, so its id is not reused
            return known[1]
        try:
            hash(typ)
        except TypeError:
            return _SDK
        declared = sdk_types.unwrap_type(typ) if typ else typ
        if declared is Any:
            declared = None
        shape: Any
        if kind is list:
            shape = rpc._get_list_element_type(declared)  # refuses a type a list cannot have, as the SDK does
        elif declared is None:
            shape = (_TRANSFORMED, _no_type)
        elif sdk_types._wire_union_members(declared) is not None:
            shape = _SDK
        elif sdk_types.is_input_type(declared):
            shape = (sdk_types.input_type_py_to_pulumi_names(declared), sdk_types.input_type_types(declared).get)
        elif declared is dict or get_origin(declared) in (dict, abc.Mapping):  # what typing.Dict, Mapping give
            args = get_args(declared)
            shape = (None, lambda _key: args[1]) if len(args) == 2 and args[0] is str else (_TRANSFORMED, _no_type)
        else:
            shape = (None, _no_type)
        shapes[id(typ), kind] = (typ, shape)
        return shape

    async def serialize_property(value, deps, property_key, resource_obj=None, input_transformer=None, typ=None,
                                 keep_output_values=False, exclude_resource_refs_from_deps=False,
                                 return_protobuf_value=False):
        kind = type(value)
        if kind in _LEAVES and not return_protobuf_value:
            return value
        shape: Any = shape_of(typ, kind) if (kind is dict or kind is list) and not return_protobuf_value else _SDK
        if shape is _SDK:
            return await original_serialize_property(value, deps, property_key, resource_obj, input_transformer, typ,
                                                     keep_output_values, exclude_resource_refs_from_deps,
                                                     return_protobuf_value)
        # The SDK's walk of a dict or list, without a coroutine per leaf: a list's items serialised with its
        # key and its items' type; a dict's keys translated, each value with its own key and its type.
        if kind is list:
            return [item if type(item) in _LEAVES else
                    await serialize_property(item, deps, property_key, resource_obj, input_transformer, shape,
                                             keep_output_values, exclude_resource_refs_from_deps)
                    for item in value]
        keys, item_type = shape
        obj = {}
        for key in value:
            item = value[key]
            if keys is _TRANSFORMED:
                name = key if input_transformer is None else input_transformer(key)
            else:
                name = key if keys is None else keys.get(key) or key
            obj[name] = item if type(item) in _LEAVES else await serialize_property(
                item, deps, key, resource_obj, input_transformer, item_type(name), keep_output_values,
                exclude_resource_refs_from_deps)
        return obj

    original_serialize_properties = rpc.serialize_properties

    async def serialize_properties(inputs, property_deps, resource_obj=None, input_transformer=None, typ=None,
                                   keep_output_values=False, exclude_resource_refs_from_deps=False):
        if resource_obj is None or keep_output_values or exclude_resource_refs_from_deps:
            return await original_serialize_properties(inputs, property_deps, resource_obj, input_transformer, typ,
                                                       keep_output_values, exclude_resource_refs_from_deps)
        # The SDK's loop, into a dict: each input serialised, translated, left out if None.
        get_type: Callable[[str], Any] = lambda key: None  # noqa: E731
        translate = input_transformer
        if typ is not None:
            names, types = sdk_types.input_type_py_to_pulumi_names(typ), sdk_types.input_type_types(typ)
            translate = lambda key: names.get(key) or key  # noqa: E731
            get_type = lambda key: types.get(translate(key))  # noqa: E731
        props = {}
        for key in inputs:
            value = inputs[key]
            deps: list = []
            try:
                result = await rpc.serialize_property(value, deps, key, resource_obj, input_transformer, get_type(key))
            except (ValueError, AssertionError) as exn:
                wrapper = ValueError if isinstance(exn, ValueError) else AssertionError
                raise wrapper(f"While processing input: {key!r}, type {type(key)}, value {value!r}\n"
                                f"{type(exn).__name__} has risen: {exn}") from exn
            if result is not None:
                name = key if translate is None else translate(key)
                props[name] = result
                property_deps[name] = deps
        return _HELD.put(props)

    original_resolve_depends_on = sdk_depends_on._resolve_depends_on

    async def resolve_depends_on(depends_on):
        if type(depends_on) is list and all(item is None or isinstance(item, pulumi.Resource) for item in depends_on):
            return {item for item in depends_on if item is not None}
        return await original_resolve_depends_on(depends_on)

    def transfer_properties(res, props, custom):
        resolvers = {}
        for name in props:
            if name == "urn" or (name == "id" and custom):
                continue  # resolved by the registration itself
            output = res.__dict__[name] = _LazyOutput(res)
            resolvers[name] = output.resolve
        return resolvers

    return [
        (rpc, "contains_unknowns", _contains_unknowns),
        (rpc, "declare_dependency", declare_dependency),
        (sdk_resource, "_get_stack_trace", source_pb2.StackTrace),
        (sdk_resource, "create_urn", create_urn),
        (sdk_resource_api, "collapse_alias_to_urn", collapse_alias_to_urn),
        (sdk_types, "unwrap_type", unwrap_type),
        (rpc, "transfer_properties", transfer_properties),
        (rpc, "resolve_outputs", resolve_outputs),
        (rpc, "serialize_property", serialize_property),
        (rpc, "serialize_properties", serialize_properties),
        (pulumi.log, "debug", _no_debug),
        (sdk_depends_on, "_resolve_depends_on", resolve_depends_on),
    ]


def _no_debug(msg: str, resource: Any = None, stream_id: int | None = None, ephemeral: bool | None = None) -> None:
    """pulumi.log.debug, offline (13.): nothing."""


def _contains_unknowns(value: Any) -> bool:
    """rpc.contains_unknowns (10.), without a closure."""
    return _has_unknowns(value, set())


def _has_unknowns(value: Any, seen: set[int]) -> bool:
    if rpc.known_types.is_unknown(value):
        return True
    if id(value) in seen:
        return False
    seen.add(id(value))
    if isinstance(value, dict):
        return any(_has_unknowns(value[key], seen) for key in value)
    if isinstance(value, list):
        return any(_has_unknowns(item, seen) for item in value)
    return False


def _output_value(value: Any, translate: Callable, typ: Any, transform: bool, key: str,
                  resource_name: str) -> tuple[Any, bool, bool]:
    """(value, known, secret) of one answered property, as the SDK's resolve_outputs makes them in a preview."""
    value = rpc.translate_output_properties(value, translate, typ, transform,
                                            path=rpc._Path(key, resource=f"{resource_name}"))
    unwrapped = rpc.unwrap_rpc_secret(value)
    return unwrapped, unwrapped is not None, rpc.is_rpc_secret(value)


class _LazyOutput(pulumi.Output):
    """A resource's output property whose future is made, and whose value converted, when first read (8.).

    Every Output method reads `_data` (the future of the value, known, secret and dependencies
    together): here it is made on that first read, resolved at once when the registration is already
    resolved, else when it is. Output.__init__ is not called: it would start a task at once.
    """

    def __init__(self, resource: Any):
        self._resource = resource
        self._made: asyncio.Future | None = None
        self._settled: tuple[Callable[[], tuple[Any, bool, bool]], Any, BaseException | None] | None = None

    @property
    def _data(self) -> asyncio.Future:
        if self._made is None:
            # Not tracked in SETTINGS.outputs as Output.__init__'s task is (its caller may hold the lock that
            # guards them): the registration resolving it is an RPC the run waits for, and fails with it.
            self._made = asyncio.get_event_loop().create_future()
            if self._settled is not None:
                self._fill()
        return self._made

    @_data.setter
    def _data(self, value: asyncio.Future) -> None:
        self._made = value

    def resolve(self, value: Any, is_known: bool, is_secret: bool, deps: Any, failed: BaseException | None) -> None:
        """The SDK's resolver of this property (rpc.Resolver)."""
        self.settle(lambda: (value, is_known, is_secret), deps, failed)

    def settle(self, convert: Callable[[], tuple[Any, bool, bool]], deps: Any,
               failed: BaseException | None = None) -> None:
        self._settled = (convert, deps, failed)
        if self._made is not None:
            self._fill()
        elif failed is not None:  # made at once, as the SDK's are
            self._data  # noqa: B018 (makes and fills the future)

    def _fill(self) -> None:
        assert self._made is not None and self._settled is not None
        convert, deps, failed = self._settled
        self._settled = None
        if self._made.done():
            return
        if failed is not None:
            self._made.set_exception(failed)
            return
        try:
            value, known, secret = convert()
        except Exception as exn:  # noqa: BLE001 (the output fails, as its task would)
            self._made.set_exception(exn)
            return
        self._made.set_result(_OutputData(resources={*(deps or ()), self._resource}, value=value, is_known=known,
                                          is_secret=secret))


class _Held:
    """A resource's inputs as serialize_properties made them, held back from its Struct (12.)."""

    __slots__ = ("props", "struct")

    def __init__(self, props: dict, struct: struct_pb2.Struct):
        self.props, self.struct = props, struct


class _HeldInputs:
    """The held inputs of the registrations under way, each behind a token: the one field of the Struct
    serialize_properties returns (12.). Taken, by that token, by the monitor the request reaches."""

    KEY = "\x00plinth-held"

    def __init__(self) -> None:
        self._held: dict[float, _Held] = {}
        self._tokens = itertools.count(1)

    def put(self, props: dict) -> struct_pb2.Struct:
        struct = struct_pb2.Struct()
        token = float(next(self._tokens))
        struct.fields[self.KEY].number_value = token
        self._held[token] = _Held(props, struct)
        return struct

    def take(self, struct: struct_pb2.Struct) -> _Held | None:
        fields = struct.fields
        if len(fields) != 1 or self.KEY not in fields:
            return None
        return self._held.pop(fields[self.KEY].number_value)

    def clear(self) -> None:
        self._held.clear()


def _restore(held: _Held | None, struct: struct_pb2.Struct) -> None:
    """Give the request's Struct, and the one the SDK keeps, the held inputs (12.), where something reads them."""
    if held is None:
        return
    for target in (struct, held.struct):
        if _HELD.KEY in target.fields:
            target.Clear()
            target.update(held.props)


_HELD = _HeldInputs()


class _Echo:
    """The deserialised inputs that answer the registration being resolved (9.): put by the fast monitor
    as it answers, taken by resolve_outputs right after, in the same step of the same task (the inline
    executor's future is done, so nothing else runs between them)."""

    def __init__(self) -> None:
        self._pending: tuple[str, Any] | None = None

    def put(self, request: Any, state: Any) -> None:
        self._pending = (request.name, state)

    def take(self, resource: Any) -> Any:
        pending, self._pending = self._pending, None
        if pending is None:
            return None
        if pending[0] != resource._name:
            raise RuntimeError(f"offline engine: the answer for {pending[0]!r} reached {resource._name!r}")
        return pending[1]

    def clear(self) -> None:
        self._pending = None


_ECHO = _Echo()


_LEAVES = frozenset((str, bool, int, float, type(None)))
"""The types serialize_property returns as they are (11.)."""
_SDK, _TRANSFORMED = object(), object()
"""serialize_property's shapes (11.): the SDK's own walk; dict keys translated by the input transformer."""


def _no_type(_key: str) -> None:
    return None


_DEPENDENCIES = resource_cycle_breaker._DEPENDENCIES_PROPERTY
_frozen = False
"""Whether the objects of the last fast run are frozen (see 6. above)."""
_FREEZE_AT = 50_000
"""Objects a run leaves for the collector (gc.get_count()[0]) from which they are frozen, not scanned (6.)."""


class _Interrupted(threading.Event):
    previous: Any = None
    """The SIGINT handler before the run."""


def _stop_on_interrupt(loop: asyncio.AbstractEventLoop) -> _Interrupted | None:
    """Ctrl-C during a run stops the event loop between callbacks (the run then raises KeyboardInterrupt). Python's
    own handler raises KeyboardInterrupt wherever the main thread is, which can be inside the SDK's bookkeeping,
    where a registration then never finishes and the run waits forever. None off the main thread (no handler)."""
    if threading.current_thread() is not threading.main_thread():
        return None
    interrupted = _Interrupted()
    interrupted.previous = signal.getsignal(signal.SIGINT)
    if interrupted.previous is signal.SIG_IGN:
        return None

    def stop() -> None:
        interrupted.set()
        loop.stop()

    loop.add_signal_handler(signal.SIGINT, stop)
    return interrupted


class _InlineExecutor(concurrent.futures.ThreadPoolExecutor):
    """Runs each call at once on the calling (event loop) thread and returns a finished asyncio
    future, which `loop.run_in_executor` hands back as it is (asyncio.wrap_future passes asyncio
    futures through). Never starts a thread."""

    def __init__(self, loop: asyncio.AbstractEventLoop):
        super().__init__(max_workers=1)
        self._loop = loop

    def submit(self, fn, /, *args, **kwargs):
        future = self._loop.create_future()
        try:
            future.set_result(fn(*args, **kwargs))
        except Exception as exn:  # noqa: BLE001 (handed to the awaiting coroutine, as a pool would)
            future.set_exception(exn)
        return future


@contextlib.contextmanager
def _offline_runtime() -> Iterator[None]:
    """Apply the offline runtime (see above) for one run; restore the SDK and the event loop after."""
    global _frozen
    patches = _sdk_patches()
    originals = [(module, name, getattr(module, name)) for module, name, _ in patches]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        try:
            previous_loop = asyncio.get_event_loop()
        except RuntimeError:
            previous_loop = None
    if _frozen:  # the last fast run's objects (6.)
        _frozen = False
        gc.unfreeze()
        gc.collect()
    collecting, freezing = gc.isenabled(), gc.get_freeze_count() == 0
    loop = asyncio.new_event_loop()
    interrupted = _stop_on_interrupt(loop)
    _ECHO.clear()
    _HELD.clear()
    try:
        loop.set_default_executor(_InlineExecutor(loop))
        asyncio.set_event_loop(loop)
        for module, name, replacement in patches:
            setattr(module, name, replacement)
        gc.disable()
        yield
    except BaseException:
        # A failed or interrupted run (Ctrl-C) leaves tasks pending: the error says what happened, the pages of
        # "Task was destroyed but it is pending!" that Python writes as it drops them would not.
        loop.set_exception_handler(lambda loop, context: None)
        if interrupted is not None and interrupted.is_set():
            raise KeyboardInterrupt from None  # not the loop's "stopped before Future completed"
        raise
    finally:
        if interrupted is not None:
            loop.remove_signal_handler(signal.SIGINT)
            if interrupted.previous is not None:  # None: a handler not set from Python, which cannot be put back
                signal.signal(signal.SIGINT, interrupted.previous)
        if collecting:
            if freezing and gc.get_count()[0] >= _FREEZE_AT:
                gc.freeze()
                _frozen = True
            gc.enable()
        for module, name, original in originals:
            setattr(module, name, original)
        asyncio.set_event_loop(previous_loop)
        loop.close()
        _ECHO.clear()
        _HELD.clear()


def plan(spec: PlatformSpec, source: str, stack: str = "offline",
         on_record: Callable[[Resource], None] | None = None, stage: str = "platform",
         provenance: Provenance | None = None, fast: bool | None = None,
         mocks: pulumi_mocks.Mocks | None = None) -> Plan:
    """Run the program of one stage (plinth.program.STAGES) offline and return what it declares.

    `fast`, `mocks`: see `record` (default: the offline runtime's shortcuts unless PLINTH_PLAN_PLAIN=1).
    """

    def program() -> None:
        # The offline engine never reads real secrets: a secret placeholder stands in for each one.
        placeholders = {secret.field: pulumi.Output.secret(_placeholder(spec, secret))
                        for secret in needed_secrets(spec, stage)}
        STAGES[stage](spec, StackSecrets(**placeholders), provenance)

    return Plan(spec.metadata.name, spec.metadata.environment, source,
                record(program, stack, on_record=on_record, fast=fast, mocks=mocks))


def _placeholder(spec: PlatformSpec, secret: StackSecret):
    if secret.entries:  # a map: one placeholder per entry
        return {entry: SECRET for entry in secret.entries(spec)}
    return SECRET
