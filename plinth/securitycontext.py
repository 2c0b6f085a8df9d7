"""The security contexts Pod Security `restricted` asks of a pod and its containers, as Plinth sets them
for its own pods and in charts' values (`plinth.governance.podsecurity` is the check they pass)."""

from __future__ import annotations


def restricted_pod(user: int | None = None, group: int | None = None, fs_group: int | None = None,
                   fs_group_on_root_mismatch: bool = False) -> dict:
    """A pod's context: non-root, the runtime's default seccomp profile, and the ids given.
    `fs_group_on_root_mismatch`: the kubelet changes a volume's group only when its root's differs
    (checked once, not on every start)."""
    ids = {"runAsUser": user, "runAsGroup": group, "fsGroup": fs_group}
    return {"runAsNonRoot": True, **{key: value for key, value in ids.items() if value is not None},
            **({"fsGroupChangePolicy": "OnRootMismatch"} if fs_group_on_root_mismatch else {}),
            "seccompProfile": {"type": "RuntimeDefault"}}


def restricted_container(read_only_root: bool | None = None, standalone: bool = False) -> dict:
    """A container's context: no privilege escalation, every capability dropped. `read_only_root`: set
    `readOnlyRootFilesystem` (None: leave it unset). `standalone`: also non-root and the default seccomp
    profile, for a container that must pass without its pod's context."""
    return {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]},
            **({"readOnlyRootFilesystem": read_only_root} if read_only_root is not None else {}),
            **({"runAsNonRoot": True, "seccompProfile": {"type": "RuntimeDefault"}} if standalone else {})}
