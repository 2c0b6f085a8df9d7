"""The hub's hooks for MLflow's sign-on, run inside the hub (rendered into hub.extraConfig as this file's source
followed by the lines that install them), and imported by the tests, which run them.

Standard library only (the hub image's Python runs them); no token is ever logged. A token is read without its
signature checked: the hub got it from the provider's token endpoint over verified TLS (as oauthenticator reads the
ID token), and MLflow checks the signature of every token it is sent.
"""

import base64
import json
import time

ENV = "MLFLOW_TRACKING_TOKEN"
"""What MLflow's client sends as `Authorization: Bearer`."""
TOKENS = ("access_token", "id_token")
"""Which tokens of auth_state may be MLflow's, in this order: an API's token first (a provider with an audience
mapper or an API scope issues the access token for MLflow), then the ID token (Dex's cross-client audience)."""


def claims(token):
    """The payload of a JWT (a dict), or None for anything else (an opaque access token)."""
    try:
        payload = token.split(".")[1]
        found = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    except (AttributeError, IndexError, ValueError):
        return None
    return found if isinstance(found, dict) else None


def audiences(found):
    aud = found.get("aud", [])
    return [aud] if isinstance(aud, str) else list(aud)


def mlflow_token(auth_state, audience, now=None):
    """The first of auth_state's tokens MLflow accepts (a JWT whose `aud` holds MLflow's client id, not
    expired), else None."""
    now = time.time() if now is None else now
    for key in TOKENS:
        found = claims((auth_state or {}).get(key))
        if found and audience in audiences(found) and found.get("exp", 0) > now:
            return auth_state[key]
    return None


def expired(auth_state, now=None):
    """Whether a token of auth_state has expired (or there is none): the person signs on again."""
    now = time.time() if now is None else now
    tokens = [claims((auth_state or {}).get(key)) for key in TOKENS]
    return not any(tokens) or any(found.get("exp", 0) <= now for found in tokens if found)


def mlflow_token_hook(audience):
    """Spawner.auth_state_hook: MLFLOW_TRACKING_TOKEN in the person's server, the token of theirs issued for
    MLflow (`aud` holds its client id); none, with a warning in the hub's log, when the provider issued none."""

    def hook(spawner, auth_state):
        token = mlflow_token(auth_state, audience)
        if token:
            spawner.environment[ENV] = token
        else:
            spawner.environment.pop(ENV, None)
            spawner.log.warning("No token of %s has MLflow's audience %r: their server signs on to MLflow with "
                                "nothing (see notebooks' README, MLflow)", spawner.user.name, audience)

    return hook


def refresh_user_hook(authenticator, user, auth_state):
    """OAuthenticator.refresh_user_hook: True (nothing to refresh) while the person's tokens are valid, False
    (sign on again, which brings new ones) once one has expired. oauthenticator's own refresh reads the stored ID
    token again and fails with a server error once it has expired (userdata_from_id_token), instead of asking
    the person to sign on again."""
    return not expired(auth_state)
