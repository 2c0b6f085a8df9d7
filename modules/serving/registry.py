"""Registry-backed models (serving.models[].registry): each release is a version of a model registered in the
platform's MLflow, fetched into the pod by an init container before the model server starts. Triton serves the
files as its model repository; a Bento (the same image on every track) reads them from $PLINTH_MODEL_DIR.

The init container runs `mlflow artifacts download` (the MLflow image of the catalog, mirrored like every
image) against the in-cluster MLflow Service, as the team's workload ServiceAccount: the server proxies the
artifacts (`--serve-artifacts`), so the pod holds no storage credential, and the team namespaces' egress to
MLflow is the only way out it needs. With MLflow's sign-on it signs on as the team's service account in MLflow
(the Secret mlflow-credentials in the team's namespace), which reads the team's models only.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

from plinth.catalog import IMAGES, ImageRef, mirror_image
from plinth.context import PlatformContext
from plinth.securitycontext import restricted_container
from plinth.spec.errors import Violation
from plinth.vocabulary import MODEL_URI_ANNOTATION, REGISTERED_MODEL_LABEL, REGISTERED_VERSION_LABEL

MOUNT = "/models"
"""Where the fetched files lie (an emptyDir): Triton's model repository, a Bento's $PLINTH_MODEL_DIR."""
MODEL_DIR_ENV = "PLINTH_MODEL_DIR"
"""Where a Bento finds the registered version's files (e.g. mlflow.pyfunc.load_model(os.environ[...]))."""
VOLUME = "registered-model"
CONTAINER = "fetch-model"
VERSION_NUMBER = re.compile(r"^[1-9][0-9]{0,17}$")
ALIAS = re.compile(r"^[A-Za-z0-9_-]{1,255}$")
"""MLflow's aliases: letters, digits, '_' and '-'; `latest` and v<number> are reserved (MLflow refuses them)."""
RESERVED_ALIAS = re.compile(r"^(latest|[vV][0-9]+)$", re.IGNORECASE)


def is_version(version: str) -> bool:
    """A registered version number (else an alias)."""
    return bool(VERSION_NUMBER.match(version))


def model_uri(model, release) -> str:
    """models:/NAME/3 (exactly version 3) or models:/NAME@alias (the version the alias names)."""
    name = model.registry.model
    return f"models:/{name}/{release.version}" if is_version(release.version) else f"models:/{name}@{release.version}"


def registered_labels(model, release) -> dict[str, str]:
    return {REGISTERED_MODEL_LABEL: model.registry.model, REGISTERED_VERSION_LABEL: release.version}


def registered_annotations(model, release) -> dict[str, str]:
    return {MODEL_URI_ANNOTATION: model_uri(model, release)}


def server_volume() -> tuple[dict, dict]:
    """(mount, volume): the fetched files in the model server, read-only (only the init container writes them)."""
    return {"name": VOLUME, "mountPath": MOUNT, "readOnly": True}, {"name": VOLUME, "emptyDir": {}}


def client_container_env() -> list[dict]:
    """The environment of an init container running MLflow's client in a team's pod (the catalog's mlflow-client
    image): the in-cluster server, the team's MLflow credentials when there are any, nothing written but /tmp."""
    from plinth.modules.mlflow import CREDENTIALS, client_env

    return [*({"name": name, "value": value} for name, value in client_env().items()),
            # With MLflow's sign-on, the team's service account (optional: without it, no such Secret).
            *({"name": key, "valueFrom": {"secretKeyRef": {"name": CREDENTIALS, "key": key, "optional": True}}}
              for key in ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD")),
            # The root is read-only: MLflow's client writes nothing but its temporary files, under $HOME.
            {"name": "HOME", "value": "/tmp"},
            # Air-gap: no usage reporting.
            {"name": "MLFLOW_ENABLE_TELEMETRY", "value": "false"},
            {"name": "DO_NOT_TRACK", "value": "true"}]


def fetch_container(model, release, ctx: PlatformContext, resources: dict) -> dict:
    """The init container: the release's registered files into the emptyDir, then it exits. It takes the model's
    own CPU and memory (requests equal to limits, no GPU), so the pod's quota and QoS stay the model's."""
    return {
        "name": CONTAINER,
        "image": mirror_image(IMAGES["mlflow-client"], ctx.mirror_registry),
        "imagePullPolicy": "Always",  # as the server beside it: the pinned tag re-checked against the registry
        "command": ["mlflow", "artifacts", "download", "--artifact-uri", model_uri(model, release),
                    "--dst-path", MOUNT],
        "env": client_container_env(),
        "resources": {"requests": dict(resources["requests"]),
                      "limits": {k: v for k, v in resources["limits"].items() if k in ("cpu", "memory")}},
        "securityContext": restricted_container(read_only_root=True, standalone=True),
        "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"}, {"name": VOLUME, "mountPath": MOUNT}],
    }


def rules(spec) -> Iterator[Violation]:
    """A registry-backed model: no model repository of its own, versions MLflow can name; a Bento names its own
    tag in `image` (the releases' versions are registered versions, no longer the image's tags)."""
    for index, model in enumerate(spec.serving.models):
        if model.registry is None:
            continue
        at = ("serving", "models", index)
        if model.model_repository:
            yield Violation((*at, "modelRepository"), "a registry-backed model's files come from MLflow, not from a "
                            "model repository", "registry-source", "remove modelRepository, or remove registry")
        if model.runtime == "bentoml" and model.image and not ImageRef.parse(model.image).pinned:
            yield Violation((*at, "image"), f"image {model.image!r} has no tag: the releases of a registry-backed "
                            "Bento name registered versions, so the image names the Bento's own", "bentoml-image",
                            f"give the Bento's tag in image (e.g. {model.image}:1.0.0)")
        for track in ("stable", "canary", "shadow"):
            release = getattr(model, track)
            if release is None or is_version(release.version):
                continue
            if release.version.isdigit() or not ALIAS.match(release.version) or \
                    RESERVED_ALIAS.match(release.version):
                yield Violation((*at, track, "version"), f"{release.version!r} is neither a registered version "
                                "number nor an alias of the registered model", "registry-version",
                                "use a version number such as 3, or an alias such as champion (letters, digits, "
                                "'_', '-'; not latest or v<number>)")
