"""Signing on to MLflow's REST API (`plinth lineage`, `plinth promote`) with MLflow's own environment variables,
read the way MLflow's Python client reads them:

- MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD, both set: HTTP Basic; else MLFLOW_TRACKING_TOKEN: HTTP
  Bearer (Basic takes precedence, as in MLflow's client; an empty variable counts as unset);
- MLFLOW_TRACKING_INSECURE_TLS (`true`/`false`/`1`/`0`, any case): for https, no certificate or host name check;
- MLFLOW_TRACKING_SERVER_CERT_PATH: for https, the CA bundle the server's certificate is checked against (instead
  of the system's); not together with MLFLOW_TRACKING_INSECURE_TLS=true.

What MLflow's sign-on plugin (mlflow-oidc-auth) accepts from such a client: a bearer JWT from the platform's
identity provider issued to MLflow's client, or Basic with a user the plugin knows and its password (a team's
service account `<team>-workloads` and its token, or a person's access token made in MLflow's UI). A credential
is never shown: not in a message, an exception or a repr; only the variables' names are.
"""

from __future__ import annotations

import base64
import os
import ssl
from collections.abc import Mapping
from dataclasses import replace

from plinth.modelclient import Credentials, Gateway
from plinth.spec.errors import SpecError, SpecInvalid

TOKEN = "MLFLOW_TRACKING_TOKEN"
USERNAME = "MLFLOW_TRACKING_USERNAME"
PASSWORD = "MLFLOW_TRACKING_PASSWORD"
INSECURE_TLS = "MLFLOW_TRACKING_INSECURE_TLS"
SERVER_CERT_PATH = "MLFLOW_TRACKING_SERVER_CERT_PATH"
BASIC_SOURCE = f"{USERNAME} and {PASSWORD}"

HOW_TO_SIGN_ON = (f"set {TOKEN} (a token the identity provider issued to MLflow's client) or {USERNAME} and "
                  f"{PASSWORD} (a team's service account and its token, or your user and an access token made in "
                  "MLflow's UI)")
"""What to do when MLflow asks for sign-on and none was sent."""


def _bad(variable: str, why: str) -> SpecInvalid:
    return SpecInvalid([SpecError(None, variable, why)])


def _visible_ascii(value: str) -> bool:
    return all("!" <= c <= "~" for c in value)


def credentials(environ: Mapping[str, str] | None = None) -> Credentials | None:
    """The credentials MLflow's client would send (None: none). A value no header can carry, or half of the
    Basic pair without a token to fall back on, is bad input (SpecInvalid, exit 2) naming the variable, never
    the value."""
    environ = os.environ if environ is None else environ
    username, password, token = (environ.get(name, "") for name in (USERNAME, PASSWORD, TOKEN))
    if username and password:
        if ":" in username or not username.isprintable():
            raise _bad(USERNAME, "a user name for HTTP Basic holds no `:` and no control character")
        pair = base64.b64encode(f"{username}:{password}".encode()).decode()
        return Credentials(BASIC_SOURCE, f"Basic {pair}", (pair, password))
    if token:
        if not _visible_ascii(token):
            raise _bad(TOKEN, "holds a space, a line break, a control or a non-ASCII character, which a bearer token "
                              "cannot (copied with its line end?)")
        return Credentials(TOKEN, f"Bearer {token}", (token,))
    if username or password:
        given, missing = (USERNAME, PASSWORD) if username else (PASSWORD, USERNAME)
        raise _bad(missing, f"{given} is set but {missing} is not: HTTP Basic needs both (or set {TOKEN})")
    return None


def tls_context(environ: Mapping[str, str] | None = None) -> ssl.SSLContext | None:
    """How an https server's certificate is checked (None: against the system's CAs, as by default)."""
    environ = os.environ if environ is None else environ
    insecure = False
    if INSECURE_TLS in environ:
        value = environ[INSECURE_TLS]
        if value.lower() not in ("true", "false", "1", "0"):
            raise _bad(INSECURE_TLS, f"expected true, false, 1 or 0 (any case), got {value!r}")
        insecure = value.lower() in ("true", "1")
    bundle = environ.get(SERVER_CERT_PATH, "")
    if insecure and bundle:
        raise _bad(SERVER_CERT_PATH, f"set while {INSECURE_TLS} is true: give one of them (MLflow's client "
                                     "refuses both too)")
    if insecure:
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        return context
    if bundle:
        try:
            return ssl.create_default_context(cafile=bundle)
        except (OSError, ssl.SSLError, ValueError) as exc:
            raise _bad(SERVER_CERT_PATH, f"{bundle}: not a readable PEM CA bundle ({type(exc).__name__}: "
                                         f"{exc})") from None
    return None


def signed_on(gateway: Gateway, environ: Mapping[str, str] | None = None) -> Gateway:
    """`gateway` with the credentials and TLS settings of MLflow's environment variables."""
    return replace(gateway, credentials=credentials(environ), context=tls_context(environ))
