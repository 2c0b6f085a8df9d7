"""The offline engine: the real program under Pulumi's mock runtime, recorded into a Plan.

No cloud account, no cluster, no network. The mock monitor sees every
registration (type, name, parent, dependencies, provider, inputs) before the
mocks answer; resources echo their inputs as outputs, so values derived from
inputs resolve and values only a deployment knows stay unknown.
"""

from __future__ import annotations

import asyncio
import atexit
import threading
from collections.abc import Callable
from typing import Any

import pulumi
from google.protobuf import json_format
from pulumi.runtime import mocks as pulumi_mocks
from pulumi.runtime import rpc
from pulumi.runtime.settings import SETTINGS
from pulumi.runtime.stack import run_pulumi_func
from pulumi.runtime.sync_await import _ensure_event_loop, _sync_await

from plinth.plan import SECRET, UNKNOWN, Plan, Resource
from plinth.context import StackSecrets
from plinth.program import STAGES
from plinth.provenance import Provenance
from plinth.stackconfig import SECRET_KEYS, required_secrets
from plinth.spec.models import PlatformSpec

PROJECT = "plinth"
_THREAD_LOOPS: set[asyncio.AbstractEventLoop] = set()


@atexit.register
def _close_thread_loops() -> None:
    for loop in _THREAD_LOOPS:
        loop.close()


class _EchoMocks(pulumi_mocks.Mocks):
    """Resources return their inputs; IDs stay unknown, as in a preview."""

    def new_resource(self, args: pulumi_mocks.MockResourceArgs) -> tuple[str | None, dict]:
        return None, args.inputs

    def call(self, args: pulumi_mocks.MockCallArgs) -> dict:
        return {}


class _RecordingMonitor(pulumi_mocks.MockMonitor):
    def __init__(self, mocks: pulumi_mocks.Mocks, progress: Callable[[int], None] | None = None):
        super().__init__(mocks)
        self.progress = progress
        self.records: list[Resource] = []
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
        if request.type != "pulumi:pulumi:Stack":
            record = Resource(
                urn=response.urn,
                type=request.type,
                name=request.name,
                parent=request.parent if request.parent and not _is_stack(request.parent) else None,
                custom=bool(request.custom),
                dependencies=tuple(sorted(set(request.dependencies))),
                # A provider reference is "<urn>::<id>"; the id is unknown offline.
                provider=request.provider.rsplit("::", 1)[0] if request.provider else None,
                inputs=_clean(json_format.MessageToDict(request.object)),
            )
            with self._lock:
                self.records.append(record)
                if self.progress:
                    self.progress(len(self.records))
        return response


def _is_stack(urn: str) -> bool:
    return urn.split("::")[2] == "pulumi:pulumi:Stack"


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
           secret_keys: tuple[str, ...] = (), progress: Callable[[int], None] | None = None) -> tuple[Resource, ...]:
    """Run `program` under the mock runtime with the given stack config; every registration, by URN.

    `progress` is called with the running count of recorded resources.
    """
    monitor = _RecordingMonitor(_EchoMocks(), progress)
    pulumi.runtime.set_mocks(monitor.mocks, project=PROJECT, stack=stack, preview=True, monitor=monitor)
    pulumi.runtime.set_all_config(config or {}, list(secret_keys))
    SETTINGS.rpc_manager.clear()
    SETTINGS.outputs.clear()
    _sync_await(run_pulumi_func(program))
    return tuple(sorted(monitor.records, key=lambda r: r.urn))


def plan(spec: PlatformSpec, source: str, stack: str = "offline",
         progress: Callable[[int], None] | None = None, stage: str = "platform",
         provenance: Provenance | None = None) -> Plan:
    """Run the program of one stage (plinth.program.STAGES) offline and return what it declares."""

    def program() -> None:
        # The offline engine never reads real secrets: a secret placeholder stands in for each one.
        placeholders = {field: pulumi.Output.secret(_placeholder(spec, field))
                        for field in required_secrets(spec, stage)}
        STAGES[stage](spec, StackSecrets(**placeholders), provenance)

    return Plan(spec.metadata.name, spec.metadata.environment, source, record(program, stack, progress=progress))


def _placeholder(spec: PlatformSpec, field: str):
    if SECRET_KEYS[field][1]:  # a map: one placeholder per receiver
        return {receiver.name: SECRET for receiver in spec.monitoring.alertmanager.receivers}
    return SECRET
