"""`plinth promote MODEL --from STACK --to STACK [--canary WEIGHT]`: the source stack's stable version becomes the
target stack's canary (or, without --canary, its stable), and the registry's aliases follow.

The target stack file's `plinth:overrides` is edited in place exactly as `plinth canary` edits it (text edit,
comments kept, validated before anything is written, atomic, the plan diff printed).

With the MLflow registry (a registry-backed model, and --url or the target stack's exported MLflow endpoint):
promotion to canary points alias CHALLENGER at the version, promotion to stable (and `plinth canary promote`)
points CHAMPION at it and removes CHALLENGER where it named that version. Before anything is written the
registry's aliases are compared with the target's spec: an alias that names neither the version the spec
serves on its track nor the version being promoted means the two already disagree, and nothing is done.

The requests sign on with MLflow's own environment variables (plinth/mlflowauth.py). MLflow refusing (401, 403)
or not answering while the aliases are read refuses the promotion (exit 2, nothing written); while they move
(the spec already written), exit 1 saying what is left to do.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass

from plinth.canary import Edit, _remove
from plinth.lineage import API, Denied, Missing, _get, refusal
from plinth.modelclient import Answer, Gateway, Unreachable
from plinth.spec.models import Model
from plinth.spec.yamledit import Refused

CHAMPION = "champion"
"""The alias of the version a stack serves as stable."""
CHALLENGER = "challenger"
"""The alias of the version a stack serves as canary."""


def source_version(model: Model, stack: str) -> str:
    """The version the source stack serves as stable: a registered model's must be a version number (an alias
    names different versions over time, and in different registries)."""
    from plinth.modules.serving.registry import is_version

    version = model.stable.version
    if model.registry and not is_version(version):
        raise Refused(f"stack {stack} serves model {model.name!r} at alias {version!r}: promote moves version "
                      "numbers; set its stable.version to the registered version number first")
    return version


def promotion(version: str, canary_weight: int | None) -> Edit:
    """The target's edit: `version` as its canary (at `canary_weight`) or as its stable."""

    def edit(model: Model, inherited: dict | None) -> list:
        changes: list = []
        if canary_weight is not None:
            if not 0 <= canary_weight <= 100:
                raise Refused(f"--canary {canary_weight}: expected a percentage from 0 to 100")
            if model.stable.version == version:
                raise Refused(f"model {model.name!r} already serves {version} as stable")
            if not (model.canary and model.canary.version == version):
                changes.append((("canary", "version"), version))
            if not (model.canary and model.canary.weight == canary_weight):
                changes.append((("canary", "weight"), canary_weight))
            return changes
        if model.stable.version != version:
            changes.append((("stable", "version"), version))
        if model.canary and model.canary.version == version:  # the canary it was becomes stable
            changes.append(_remove("canary", inherited))
        return changes

    return edit


# --- the registry's aliases -------------------------------------------------------------------------------


@dataclass(frozen=True)
class AliasMove:
    """Point `alias` of registered model `name` at `version`; `drop`: aliases to remove where they name it."""

    name: str
    alias: str
    version: str
    drop: tuple[str, ...] = ()


def aliases(mlflow: Gateway, name: str, team: str | None = None) -> dict[str, str]:
    """alias -> version of a registered model (Refused when it is not registered, or MLflow refuses or cannot be
    read; `team`: whose model it is, for the refusal)."""
    try:
        found = _get(mlflow, "registered-models/get", {"name": name}, f"registered model {name!r}"
                     ).get("registered_model") or {}
    except Missing as exc:
        raise Refused(f"registered model {name!r} does not exist in MLflow at {mlflow.url} ({exc})") from None
    except Denied as exc:
        raise Refused(exc.explain(team)) from None
    except (Answer, Unreachable, ValueError) as exc:
        raise Refused(f"MLflow at {mlflow.url} cannot be read: {exc}") from None
    return {str(a["alias"]): str(a["version"]) for a in found.get("aliases") or () if isinstance(a, dict)}


def check_agreement(current: dict[str, str], move: AliasMove, served: dict[str, str | None]) -> None:
    """Refuse when an alias names neither the version the spec serves on its track (`served`: alias -> version
    or None) nor the version being promoted: the registry and the spec already disagree."""
    from plinth.modules.serving.registry import is_version

    for alias, version in sorted(served.items()):
        if version is not None and not is_version(version):
            version = current.get(version)  # the spec serves an alias: the version it names
        named = current.get(alias)
        if named is None or named == move.version or (version is not None and named == version):
            continue
        serving = f"serves {version}" if version else "serves nothing"
        raise Refused(f"the registry and the spec already disagree: alias {alias!r} of {move.name!r} names version "
                      f"{named}, but the track it stands for {serving}; set the alias or the spec right first")


def apply_move(mlflow: Gateway, move: AliasMove, current: dict[str, str], say) -> None:
    """Move the alias and drop the others that named the version, saying each step done."""
    if current.get(move.alias) != move.version:
        _send(mlflow, "POST", "registered-models/alias", {"name": move.name, "alias": move.alias,
                                                          "version": move.version})
        say(f"alias {move.alias} of {move.name} -> version {move.version}")
    for alias in move.drop:
        if current.get(alias) == move.version:
            _send(mlflow, "DELETE", "registered-models/alias", {"name": move.name, "alias": alias})
            say(f"alias {alias} of {move.name} removed")


def _send(mlflow: Gateway, method: str, path: str, message: dict[str, str]) -> None:
    # MLflow reads every message but a GET's from a JSON body (a DELETE's too).
    status, body = mlflow.request(method, f"{API}/{path}", {"Content-Type": "application/json"},
                                  json.dumps(message).encode())
    what = (f"{'removing' if method == 'DELETE' else 'setting'} alias {message.get('alias')!r} of registered model "
            f"{message.get('name')!r}")
    refused = refusal(mlflow, status, body, what)
    if refused is not None:
        raise refused


def served_versions(model: Model) -> dict[str, str | None]:
    """What the spec serves on the tracks the aliases stand for."""
    return {CHAMPION: model.stable.version, CHALLENGER: model.canary.version if model.canary else None}


class AliasesNotMoved(Exception):
    """MLflow failed while the aliases moved (after the spec was written)."""


class AliasStep:
    """A registry-backed edit's alias move: read and checked (`prepare`, before the spec is written), then made
    (`apply`, after). `where` finds MLflow's URL (None: the aliases are not moved, said through `say`); `move`
    makes the AliasMove from the model as the edited file has it before the edit (None: nothing to move)."""

    def __init__(self, where: Callable[[], str | None], move: Callable[[Model], AliasMove | None],
                 say: Callable[[str], None], timeout: float = 10.0):
        self.where, self.move, self.say, self.timeout = where, move, say, timeout
        self.prepared: tuple[Gateway, AliasMove, dict[str, str], str] | None = None

    def prepare(self, target, model_ref: str) -> bool:
        """Read the registry and refuse (SpecInvalid naming the file) a disagreement; True when an alias changes."""
        from plinth.canary import _refused, _spec, find_model
        from plinth.lineage import client

        try:
            found = find_model(_spec(target, target.path), model_ref)
            move = self.move(found) if found.registry else None
            if move is None:
                return False
            url = self.where()
            if url is None:
                self.say("note: no MLflow URL (--url): the registry's aliases are not moved")
                return False
            mlflow = client(url, self.timeout)
            current = aliases(mlflow, move.name, found.team)
            check_agreement(current, move, served_versions(found))
        except Refused as exc:
            raise _refused(target, str(exc)) from None
        self.prepared = (mlflow, move, current, found.team)
        return current.get(move.alias) != move.version or any(current.get(a) == move.version for a in move.drop)

    def apply(self) -> None:
        if self.prepared is None:
            return
        mlflow, move, current, team = self.prepared
        try:
            apply_move(mlflow, move, current, self.say)
        except (Answer, Unreachable) as exc:
            why = exc.explain(team) if isinstance(exc, Denied) else str(exc)
            left = f", and {', '.join(move.drop)} not name it" if move.drop else ""
            raise AliasesNotMoved(f"the registry's aliases were not all moved ({why}): alias {move.alias} of "
                                  f"{move.name} should name version {move.version}{left}") from None
