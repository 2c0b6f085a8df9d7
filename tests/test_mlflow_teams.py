"""Per-team permissions in the real MLflow server (registry.mlflow with identity.oidc.clients.mlflow): the server,
its migration and its team-permissions init container started exactly as the chart renders them with Plinth's
values (tests/test_mlflow_server.py's Pod), with the image's mlflow-oidc-auth plugin (`--app-name oidc-auth`),
against a real PostgreSQL with TLS, signing people on through a real OIDC provider: the toolchain's mockoidc
(tests/e2e/toolchain/mockoidc), over TLS with a CA of its own, which the plan carries as
identity.oidc.certificateAuthority.

People and scripts come with the provider's ID tokens for MLflow's client (`Authorization: Bearer`, what
MLFLOW_TRACKING_TOKEN sends); a team's workloads with its service account's credentials from the Secret Plinth
puts in the team's namespace (MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD). What differs from a cluster
is what tests/test_mlflow_server.py substitutes (addresses, mounted paths, Secrets' values); the issuer is the
real provider's. Artifacts stay out of it (no object store here): they are covered by the experiment's permission
as every other call under it (the server proxies them).

`plinth lineage` and `plinth promote` sign on the same ways (MLFLOW_TRACKING_TOKEN, or MLFLOW_TRACKING_USERNAME and
MLFLOW_TRACKING_PASSWORD): a team's engineer and its service account read and move its model's aliases, and every
refusal (no credentials, a forged token, another team, a permission the account lacks) is an error that says what
to set, with no credential in any output.
"""

from __future__ import annotations

import base64
import http.cookiejar
import json
import os
import secrets
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import pytest

from oidcserver import NoRedirect, provider_fixture
from support import CHARTS_DIR, free_port, packaged_charts_helm, platform_spec
from test_mlflow_server import KUBE, PLATFORM, SEED, Pod, database, local_volumes, python, running  # noqa: F401
from plinth.catalog import MLFLOW_OIDC_AUTH
from plinth.engine.charts import chart_archive, template
from plinth.engine.offline import plan
from plinth.modules.mlflow import (CREDENTIALS, DATABASE, OIDC_CA, OIDC_SECRET, S3_SECRET, SERVICE, TEAM_TOKENS,
                                   s3_keys, team_token, workload_user)
from plinth.modules.objectstore import CA_SECRET as OBJECT_STORE_CA

pytestmark = pytest.mark.toolchain  # helm and mockoidc: runs after the other tests (tests/conftest.py)

PLUGIN = f"mlflow-oidc-auth=={MLFLOW_OIDC_AUTH}"
"""The plugin the catalog's image locks beside MLflow; .ci/run installs it."""
MLFLOW_CLIENT = "plinth-mlflow"
KUBERNETES_CLIENT = "plinth-kubernetes"
ADMINS = "ml-platform-admins"
FRAUD, RISK = "fraud-ml-engineers", "risk-ml-engineers"
CLIENT_SECONDS = 300


@pytest.fixture(scope="module")
def plugin(python) -> Path:  # noqa: F811
    """The MLflow environment has the image's plugin (absent: skip, before anything starts)."""
    found = subprocess.run([str(python), "-c", "import importlib.metadata as m; print(m.version('mlflow-oidc-auth'))"],
                           capture_output=True, text=True, timeout=60)
    if found.returncode != 0 or found.stdout.strip() != PLUGIN.split("==")[1]:
        pytest.skip(f"no {PLUGIN} in $PLINTH_MLFLOW_PYTHON's environment (the image's sign-on plugin; .ci/run "
                    "installs it)")
    return python


provider = provider_fixture(MLFLOW_CLIENT)


@pytest.fixture(scope="module")
def planned(provider) -> tuple[dict, ...]:
    """The mlflow release of an on-prem dev platform signing on through the provider, two teams, rendered from the
    real chart."""
    helm = packaged_charts_helm(f"MLflow's real chart and helm are needed to start the server as planned: "
                                f"packaged charts at {CHARTS_DIR} (or PLINTH_CHARTS_DIR) and helm "
                                "(tests/e2e/toolchain/build.sh, or PLINTH_HELM)")
    spec = platform_spec({
        "storage": {"objectStore": {"enabled": True}}, "registry": {"mlflow": {"enabled": True}},
        "identity": {"oidc": {"issuer": provider.issuer, "certificateAuthority": provider.ca_pem,
                              "clients": {"kubernetes": KUBERNETES_CLIENT, "mlflow": MLFLOW_CLIENT}}},
        "rbac": {"platformAdminGroup": ADMINS},
        "teams": [{"name": "fraud", "groups": {"mlEngineer": [FRAUD], "viewer": ["fraud-auditors"]}},
                  {"name": "risk", "groups": {"mlEngineer": [RISK]}}]})
    resources = plan(spec, "mlflow-teams").resources
    [release] = [r for r in resources if r.type.endswith("helm.sh/v3:Release") and r.name == "mlflow"]
    # The team's credentials Secret in its namespace, and the tokens' in MLflow's: names the plan carries.
    secrets_ = {(r.inputs["metadata"]["namespace"], r.inputs["metadata"]["name"]) for r in resources
                if r.type == "kubernetes:core/v1:Secret"}
    assert {("fraud", CREDENTIALS), ("risk", CREDENTIALS), ("mlflow", TEAM_TOKENS), ("mlflow", OIDC_SECRET)} <= secrets_
    return template(release, chart_archive(release, CHARTS_DIR), KUBE, helm)


@pytest.fixture(scope="module")
def server(plugin, planned, database, provider, tmp_path_factory):  # noqa: F811
    pg, ca, owner = database
    work = tmp_path_factory.mktemp("mlflow")
    flask_key = secrets.token_urlsafe(32)
    stand_ins = {
        f"{DATABASE}-app": owner,
        f"{DATABASE}-ca": {"ca.crt": ca.read_text()},
        S3_SECRET: s3_keys(SEED, PLATFORM),
        f"{SERVICE}-flask-server-secret-key": {"MLFLOW_FLASK_SERVER_SECRET_KEY": flask_key},
        f"{SERVICE}-env-secret": {},
        OIDC_SECRET: {"client-secret": provider.secret},
        OIDC_CA: {"ca.crt": provider.ca_pem},
        OBJECT_STORE_CA: {"ca.crt": provider.ca_pem},  # a CA for the volume: no artifact is stored here
        # What Plinth derives from the Flask key, per team (the team namespaces' Secrets hold the same).
        TEAM_TOKENS: {team: team_token(flask_key, PLATFORM, team) for team in ("fraud", "risk")},
    }
    volumes = local_volumes(planned, stand_ins, work)
    pod = Pod(planned, stand_ins, volumes, {"PGHOST": "localhost", "PGPORT": str(pg.port),
                                            "MLFLOW_S3_ENDPOINT_URL": f"https://127.0.0.1:{free_port()}"},
              plugin.parent)
    with running(pod, work, ("db-migration", "team-permissions")) as (url, command):
        yield url, command, pod, flask_key


def call(url: str, method: str, path: str, body: dict | None = None, token: str | None = None,
         basic: tuple[str, str] | None = None) -> tuple[int, dict]:
    """One REST call to MLflow: (status, JSON body)."""
    headers = {"Content-Type": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    if basic:
        headers["Authorization"] = "Basic " + base64.b64encode(":".join(basic).encode()).decode()
    data = None
    if method == "GET" and body:
        path = f"{path}?{urllib.parse.urlencode(body)}"
    elif body is not None:
        data = json.dumps(body).encode()
    request = urllib.request.Request(f"{url}/api/2.0/mlflow/{path}", data=data, method=method, headers=headers)
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}), NoRedirect)
    try:
        with opener.open(request, timeout=30) as answer:
            return answer.status, json.loads(answer.read() or b"{}")
    except urllib.error.HTTPError as error:
        text = error.read()
        try:
            return error.code, json.loads(text or b"{}")
        except ValueError:
            return error.code, {"text": text.decode(errors="replace")[:300]}


def test_the_server_signs_on_through_the_provider_as_planned(server, provider):
    url, command, pod, _ = server
    assert "--app-name=oidc-auth" in command
    env = pod.env(pod.container("mlflow"))
    assert env["OIDC_DISCOVERY_URL"] == f"{provider.issuer}/.well-known/openid-configuration"
    assert (env["OIDC_AUDIENCE"], env["OIDC_ADMIN_GROUP_NAME"], env["DEFAULT_MLFLOW_PERMISSION"]) == (
        MLFLOW_CLIENT, ADMINS, "NO_PERMISSIONS")
    assert env["OIDC_CLIENT_SECRET"] == provider.secret  # from the Secret mlflow-oidc, never a value


def test_each_team_reaches_its_own_experiments_and_models_only(server, provider):
    url = server[0]
    fraud = provider.id_token("alice@corp.example", [FRAUD])
    risk = provider.id_token("bob@corp.example", [RISK])
    admin = provider.id_token("root@corp.example", [ADMINS])

    # No credentials, a token for another client (the Kubernetes API's), a forged one: refused.
    assert call(url, "POST", "experiments/search", {"max_results": 10})[0] == 401
    kube = provider.id_token("alice@corp.example", [FRAUD], client=KUBERNETES_CLIENT)
    assert call(url, "POST", "experiments/search", {"max_results": 10}, token=kube)[0] == 401
    assert call(url, "POST", "experiments/search", {"max_results": 10}, token=fraud[:-4] + "AAAA")[0] == 401

    # Fraud creates and reads its experiment, a run in it, and its registered model.
    status, created = call(url, "POST", "experiments/create", {"name": "fraud.scoring"}, token=fraud)
    assert status == 200, created
    fraud_experiment = created["experiment_id"]
    assert call(url, "GET", "experiments/get", {"experiment_id": fraud_experiment}, token=fraud)[0] == 200
    status, run = call(url, "POST", "runs/create", {"experiment_id": fraud_experiment}, token=fraud)
    assert status == 200, run
    assert call(url, "POST", "registered-models/create", {"name": "fraud.scorer"}, token=fraud)[0] == 200
    assert call(url, "GET", "registered-models/get", {"name": "fraud.scorer"}, token=fraud)[0] == 200
    # Nobody makes names outside their teams': not fraud a risk name, not anyone an unprefixed one.
    assert call(url, "POST", "experiments/create", {"name": "risk.stolen"}, token=fraud)[0] == 403
    assert call(url, "POST", "registered-models/create", {"name": "scorer"}, token=fraud)[0] == 403

    # Risk is refused on fraud's, and has its own.
    assert call(url, "GET", "experiments/get", {"experiment_id": fraud_experiment}, token=risk)[0] == 403
    assert call(url, "GET", "registered-models/get", {"name": "fraud.scorer"}, token=risk)[0] == 403
    assert call(url, "POST", "runs/create", {"experiment_id": fraud_experiment}, token=risk)[0] == 403
    assert call(url, "POST", "registered-models/create", {"name": "fraud.scorer-v2"}, token=risk)[0] == 403
    status, created = call(url, "POST", "experiments/create", {"name": "risk.limits"}, token=risk)
    assert status == 200, created
    risk_experiment = created["experiment_id"]
    assert call(url, "POST", "registered-models/create", {"name": "risk.limits"}, token=risk)[0] == 200

    # Searches show each team its own; the admins see both teams'.
    def experiments(token):
        status, found = call(url, "POST", "experiments/search", {"max_results": 100}, token=token)
        assert status == 200, found
        return sorted(e["name"] for e in found.get("experiments", []))

    def models(token):
        status, found = call(url, "GET", "registered-models/search", {"max_results": 100}, token=token)
        assert status == 200, found
        return sorted(m["name"] for m in found.get("registered_models", []))

    assert experiments(fraud) == ["fraud.scoring"] and models(fraud) == ["fraud.scorer"]
    assert experiments(risk) == ["risk.limits"] and models(risk) == ["risk.limits"]
    assert {"fraud.scoring", "risk.limits"} <= set(experiments(admin))
    assert models(admin) == ["fraud.scorer", "risk.limits"]
    assert call(url, "GET", "experiments/get", {"experiment_id": risk_experiment}, token=admin)[0] == 200

    # A signed-on user in no team's group reaches nothing.
    stranger = provider.id_token("eve@corp.example", ["marketing"])
    assert call(url, "GET", "experiments/get", {"experiment_id": fraud_experiment}, token=stranger)[0] in (401, 403)
    assert call(url, "POST", "experiments/create", {"name": "fraud.eve"}, token=stranger)[0] in (401, 403)

    # A fraud viewer reads fraud's, and writes nothing.
    viewer = provider.id_token("carol@corp.example", ["fraud-auditors"])
    assert call(url, "GET", "registered-models/get", {"name": "fraud.scorer"}, token=viewer)[0] == 200
    assert call(url, "POST", "runs/create", {"experiment_id": fraud_experiment}, token=viewer)[0] == 403


def test_a_person_signs_in_through_the_browser_and_sees_their_teams_only(server, provider):
    """The UI's sign-in, as a browser goes through it: MLflow's /login sends it to the provider, which signs the person
    in (with the profile's display name MLflow's plugin requires) and sends it back to /callback with a code; MLflow
    redeems the code and keeps the person, with their groups, in its session cookie."""
    url = server[0]
    call(url, "POST", "experiments/create", {"name": "fraud.browser-seen"},
         token=provider.id_token("alice@corp.example", [FRAUD]))
    call(url, "POST", "experiments/create", {"name": "risk.browser-unseen"},
         token=provider.id_token("bob@corp.example", [RISK]))
    # The session cookie is Secure: the Gateway serves MLflow over HTTPS; here it is plain HTTP on loopback.
    loopback_is_https = http.cookiejar.DefaultCookiePolicy()
    loopback_is_https.secure_protocols = ("https", "http")
    browser = provider.browser(urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar(loopback_is_https)))
    cookies: list[str] = []

    def redirected(address: str) -> str:
        try:
            answer = browser.open(address, timeout=30)
        except urllib.error.HTTPError as redirect:
            assert redirect.code in (302, 303, 307), (address, redirect.code, redirect.read()[:300])
            cookies.extend(redirect.headers.get_all("Set-Cookie") or [])
            return redirect.headers["Location"]
        raise AssertionError(f"{address} answered {answer.status}, not a redirect")

    provider.control("/user", {"subject": "frank", "email": "frank@corp.example", "groups": [FRAUD],
                               "name": "Frank Fraud"})
    to_provider = redirected(f"{url}/login")
    assert to_provider.startswith(f"{provider.issuer}/authorize?"), to_provider
    back = urllib.parse.urlsplit(redirected(to_provider))
    assert back.path == "/callback" and "code=" in back.query, back
    # The provider sends the browser to the planned hostname; here the same path on the local server.
    home = redirected(f"{url}/callback?{back.query}")
    assert "error" not in home, urllib.parse.unquote(home)
    assert cookies and all({"secure", "httponly", "samesite=lax"} <= {part.strip().lower() for part in cookie.split(";")}
                           for cookie in cookies), cookies

    with browser.open(f"{url}/api/2.0/mlflow/experiments/search?max_results=100", timeout=30) as answer:
        names = {e["name"] for e in json.loads(answer.read()).get("experiments", [])}
    assert "fraud.browser-seen" in names and not any(name.startswith("risk.") for name in names), names
    # Without the session's cookie, the same call is refused.
    assert call(url, "GET", "experiments/search", {"max_results": 100})[0] == 401


CLIENT = r"""
import json, sys
import mlflow
from mlflow import MlflowClient

url, experiment_name, foreign = sys.argv[1:4]
mlflow.set_tracking_uri(url)
experiment = mlflow.set_experiment(experiment_name)
with mlflow.start_run(experiment_id=experiment.experiment_id) as run:
    mlflow.log_metric("loss", 0.25)
client = MlflowClient(url)
try:
    client.get_registered_model(foreign)
    refused = None
except mlflow.exceptions.MlflowException as error:
    refused = str(error)[:300]
print(json.dumps({"metric": client.get_run(run.info.run_id).data.metrics["loss"], "refused": refused}))
"""


@pytest.mark.parametrize("how", ["token", "service-account"])
def test_workloads_sign_on_with_mlflows_own_client(server, provider, tmp_path, how):
    """MLflow's Python client, as a workload runs it: a provider token (MLFLOW_TRACKING_TOKEN), or the team's
    service account (MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD, as the team's Secret holds them)."""
    url, _, _, flask_key = server
    if how == "token":
        auth = {"MLFLOW_TRACKING_TOKEN": provider.id_token("dave@corp.example", [RISK])}
    else:
        auth = {"MLFLOW_TRACKING_USERNAME": workload_user("risk"),
                "MLFLOW_TRACKING_PASSWORD": team_token(flask_key, PLATFORM, "risk")}
    interpreter = server[2].bin_dir / "python"
    env = {"PATH": f"{interpreter.parent}:/usr/bin:/bin", "HOME": str(tmp_path), "LC_ALL": "C.UTF-8",
           "MLFLOW_ENABLE_TELEMETRY": "false", "DO_NOT_TRACK": "true", "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0", **auth}
    # A model of fraud's (there already when the other case made it): the risk workload is refused on it.
    call(url, "POST", "registered-models/create", {"name": "fraud.workload-probe"},
         token=provider.id_token("alice@corp.example", [FRAUD]))
    started = time.monotonic()
    done = subprocess.run([str(interpreter), "-c", CLIENT, url, f"risk.{how}", "fraud.workload-probe"],
                          capture_output=True, text=True, timeout=CLIENT_SECONDS, env=env, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-4000:]
    print(f"\n[mlflow] client ({how}) {time.monotonic() - started:.1f}s")
    result = json.loads(done.stdout.strip().splitlines()[-1])
    # The plugin's 403 carries its own message (the client reads no MLflow error code in it).
    assert result["metric"] == 0.25 and "Permission denied" in result["refused"], result
    # A wrong password is no sign-on.
    if how == "service-account":
        assert call(url, "POST", "experiments/search", {"max_results": 1},
                    basic=(workload_user("risk"), "not-the-token"))[0] == 401


def test_the_grants_follow_the_spec_at_every_start(server, database):  # noqa: F811
    """The team-permissions init container runs at every pod start (a restart, each replica): again unchanged it
    adds nothing; with the spec changed it revokes and updates Plinth's grants and leaves an admin's own."""
    _, _, pod, _ = server
    pg = database[0]
    step = pod.container("team-permissions")
    planned_env = pod.process_env(step)
    planned = json.loads(planned_env["PLINTH_TEAM_GRANTS"])

    def start(grants: list[dict]) -> None:
        done = subprocess.run(pod.command(step), env={**planned_env, "PLINTH_TEAM_GRANTS": json.dumps(grants)},
                              capture_output=True, text=True, timeout=300, cwd=pod.volumes["tmp"])
        assert done.returncode == 0, done.stderr[-4000:]

    def granted(table: str) -> list[tuple[str, str, str]]:
        rows = pg.command("psql", "-X", "-q", "-A", "-t", "-F", "|", "-h", pg.run, "-p", pg.port, "-U", "postgres",
                          "-d", "mlflow", "-c", f"SELECT g.group_name, p.regex, p.permission FROM {table} p JOIN "
                          "groups g ON g.id = p.group_id ORDER BY 1, 2").stdout.split()
        return [tuple(row.split("|")) for row in rows]

    def expected(grants: list[dict]) -> list[tuple[str, str, str]]:
        return sorted((g["group"], g["regex"], g["permission"]) for g in grants)

    start(planned)
    for table in ("experiment_group_regex_permissions", "registered_model_group_regex_permissions"):
        assert granted(table) == expected(planned)
    # An admin's own grant (not of Plinth's shape) stays through every start.
    pg.command("psql", "-X", "-q", "-h", pg.run, "-p", pg.port, "-U", "postgres", "-d", "mlflow", "-c",
               "INSERT INTO experiment_group_regex_permissions (regex, priority, group_id, permission) SELECT "
               "'^shared-.*', 1, id, 'READ' FROM groups WHERE group_name = 'fraud-auditors'")
    # Risk leaves the spec; fraud's viewers become data scientists.
    changed = [{**g, "permission": "EDIT" if g["group"] == "fraud-auditors" else g["permission"]}
               for g in planned if not g["regex"].startswith("^risk")]
    try:
        start(changed)
        assert granted("registered_model_group_regex_permissions") == expected(changed)
        assert granted("experiment_group_regex_permissions") == sorted(
            [*expected(changed), ("fraud-auditors", "^shared-.*", "READ")])
    finally:
        start(planned)


# --- plinth lineage and plinth promote, signed on ---------------------------------------------------------------

PROMOTED = "fraud.promoted"
PROMO_BASE = f"""\
apiVersion: plinth.dev/v1alpha1
kind: Platform
metadata: {{name: promo, environment: dev, costCenter: cc-1}}
target: {{type: existing}}
rbac: {{platformAdminGroup: {ADMINS}}}
network:
  cilium: {{enabled: true, apiServer: {{host: api.k8s.internal}}}}
  loadBalancer: {{ranges: [172.31.255.240/29]}}
  gateway: {{hostname: "*.models.internal"}}
certificates: {{certManager: {{enabled: true}}}}
monitoring: {{enabled: true}}
storage: {{objectStore: {{enabled: true}}}}
secrets: {{vault: {{enabled: true}}}}
registry: {{mlflow: {{enabled: true}}}}
teams:
  - {{name: fraud, groups: {{mlEngineer: [{FRAUD}]}}}}
  - {{name: risk, groups: {{mlEngineer: [{RISK}]}}}}
serving:
  hostname: serving.models.internal
  models:
    - name: scorer
      team: fraud
      runtime: triton
      registry: {{model: {PROMOTED}}}
      stable: {{version: "1"}}
"""
PROMO_PROD = """\
# Production.
config:
  plinth:blueprint: blueprints/base.yaml
  plinth:overrides:
    metadata: {name: promo-prod}
"""
PROMO_STAGING = """\
config:
  plinth:blueprint: blueprints/base.yaml
  plinth:overrides:
    serving:
      models:
        - name: scorer
          stable: {version: "2"}
"""


def register_promoted(url: str, token: str) -> str:
    """Fraud's experiment and registered model PROMOTED, as its engineer makes them through the REST API: one run
    (a param, a metric, an input dataset), versions 1 and 2 of it, alias champion -> 1. The run's id."""
    def ok(method: str, path: str, body: dict) -> dict:
        status, answer = call(url, method, path, body, token=token)
        assert status == 200, (path, status, answer)
        return answer

    experiment = ok("POST", "experiments/create", {"name": PROMOTED})["experiment_id"]
    run = ok("POST", "runs/create", {"experiment_id": experiment})["run"]["info"]
    ok("POST", "runs/log-batch", {"run_id": run["run_id"], "params": [{"key": "depth", "value": "6"}],
                                  "metrics": [{"key": "auc", "value": 0.91, "timestamp": 0, "step": 0}]})
    ok("POST", "runs/log-inputs", {"run_id": run["run_id"], "datasets": [{
        "dataset": {"name": "transactions", "digest": "5e1ec7ed", "source_type": "code", "source": "{}"},
        "tags": [{"key": "mlflow.data.context", "value": "training"}]}]})
    ok("POST", "registered-models/create", {"name": PROMOTED})
    for _ in range(2):
        ok("POST", "model-versions/create", {"name": PROMOTED, "source": f"{run['artifact_uri']}/triton",
                                             "run_id": run["run_id"]})
    ok("POST", "registered-models/alias", {"name": PROMOTED, "alias": "champion", "version": "1"})
    return run["run_id"]


@pytest.fixture(scope="module")
def promoted(server, provider) -> str:
    return register_promoted(server[0], provider.id_token("alice@corp.example", [FRAUD]))


def promo_project(directory: Path) -> Path:
    (directory / "Pulumi.yaml").write_text((Path(__file__).resolve().parent.parent / "Pulumi.yaml").read_text())
    for name, text in {"blueprints/base.yaml": PROMO_BASE, "stacks/Pulumi.prod.yaml": PROMO_PROD,
                       "stacks/Pulumi.staging.yaml": PROMO_STAGING}.items():
        (directory / name).parent.mkdir(exist_ok=True)
        (directory / name).write_text(text)
    return directory


def signed(*args: str, cwd: Path, **credentials: str) -> subprocess.CompletedProcess:
    """`plinth ARGS` with exactly `credentials` among MLflow's variables (none of this shell's)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_TRACKING_")}
    done = subprocess.run([sys.executable, "-c", "from plinth.cli import main; main()", *args], cwd=cwd,
                          capture_output=True, text=True, timeout=120,
                          env={**env, **credentials, "NO_COLOR": "1", "PLINTH_DEBUG": ""})
    assert "Traceback" not in done.stderr, done.stderr
    for name, secret in credentials.items():  # no credential in any output (a user name is no secret)
        if name != "MLFLOW_TRACKING_USERNAME":
            assert secret not in done.stdout and secret not in done.stderr, name
    return done


def aliases_now(url: str, admin: str) -> dict[str, str]:
    status, found = call(url, "GET", "registered-models/get", {"name": PROMOTED}, token=admin)
    assert status == 200, found
    return {a["alias"]: a["version"] for a in found["registered_model"].get("aliases", [])}


def test_lineage_reads_a_teams_model_with_its_credentials_only(server, provider, promoted, tmp_path):
    url = server[0]
    project = promo_project(tmp_path)
    fraud = {"MLFLOW_TRACKING_TOKEN": provider.id_token("alice@corp.example", [FRAUD])}
    workloads = {"MLFLOW_TRACKING_USERNAME": workload_user("fraud"),
                 "MLFLOW_TRACKING_PASSWORD": team_token(server[3], PLATFORM, "fraud")}
    for credentials in (fraud, workloads):
        started = time.monotonic()
        done = signed("lineage", "--stack", "prod", "--url", url, "--json", cwd=project, **credentials)
        print(f"\n[mlflow] lineage ({', '.join(credentials)}) {time.monotonic() - started:.1f}s")
        assert done.returncode == 0, done.stdout + done.stderr
        [track] = json.loads(done.stdout)["tracks"]
        assert (track["resolved_version"], track["run_id"], track["params"], track["metrics"]) == (
            "1", promoted, {"depth": "6"}, {"auc": 0.91})
        assert [d["digest"] for d in track["datasets"]] == ["5e1ec7ed"]

    # No credentials: every track says which variables to set; exit 1 as for an unreachable MLflow.
    done = signed("lineage", "--stack", "prod", "--url", url, cwd=project)
    assert done.returncode == 1
    assert f"  error: MLflow at {url} requires sign-on for version 1 of registered model '{PROMOTED}' (HTTP 401: " \
           "Authentication required): set MLFLOW_TRACKING_TOKEN (a token the identity provider issued to MLflow's " \
           "client) or MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD" in done.stdout, done.stdout
    assert done.stdout.splitlines()[-1].endswith("s, 1 not readable from MLflow"), done.stdout
    # Another team's engineer, a forged token: refused, saying whose the model is and what was not accepted.
    risk = provider.id_token("bob@corp.example", [RISK])
    done = signed("lineage", "--stack", "prod", "--url", url, cwd=project, MLFLOW_TRACKING_TOKEN=risk)
    assert done.returncode == 1
    assert f"  error: MLflow at {url} refused version 1 of registered model '{PROMOTED}' to the credentials in " \
           "MLFLOW_TRACKING_TOKEN (HTTP 403: Permission denied): it is team fraud's; sign on as a member of one of " \
           "its groups, or as its service account fraud-workloads" in done.stdout, done.stdout
    done = signed("lineage", "--stack", "prod", "--url", url, cwd=project,
                  MLFLOW_TRACKING_TOKEN=fraud["MLFLOW_TRACKING_TOKEN"][:-4] + "AAAA")
    assert done.returncode == 1
    assert "did not accept the credentials in MLFLOW_TRACKING_TOKEN for version 1 of registered model " \
           f"'{PROMOTED}' (HTTP 401: Authentication required): set a fresh token" in done.stdout, done.stdout


def test_promote_moves_a_teams_aliases_with_its_credentials_only(server, provider, promoted, tmp_path):
    url = server[0]
    project = promo_project(tmp_path)
    prod = project / "stacks/Pulumi.prod.yaml"
    admin = provider.id_token("root@corp.example", [ADMINS])
    canary = ("promote", "scorer", "--from", "staging", "--to", "prod", "--canary", "20", "--url", url)
    stable = ("promote", "scorer", "--from", "staging", "--to", "prod", "--url", url)
    before = aliases_now(url, admin)
    assert before == {"champion": "1"}

    # No credentials, another team's engineer: refused before anything is written (exit 2, as for an unreachable
    # MLflow), saying which variables to set or whose the model is.
    done = signed(*canary, cwd=project)
    assert done.returncode == 2
    assert done.stderr.splitlines() == [
        f"stacks/Pulumi.prod.yaml: not changed: MLflow at {url} requires sign-on for registered model '{PROMOTED}' "
        "(HTTP 401: Authentication required): set MLFLOW_TRACKING_TOKEN (a token the identity provider issued to "
        "MLflow's client) or MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD (a team's service account and "
        "its token, or your user and an access token made in MLflow's UI)", "1 error"]
    done = signed(*canary, cwd=project, MLFLOW_TRACKING_TOKEN=provider.id_token("bob@corp.example", [RISK]))
    assert done.returncode == 2
    assert done.stderr.splitlines() == [
        f"stacks/Pulumi.prod.yaml: not changed: MLflow at {url} refused registered model '{PROMOTED}' to the "
        "credentials in MLFLOW_TRACKING_TOKEN (HTTP 403: Permission denied): it is team fraud's; sign on as a member "
        "of one of its groups, or as its service account fraud-workloads", "1 error"]
    assert prod.read_text() == PROMO_PROD and aliases_now(url, admin) == before

    # Fraud's service account (EDIT on fraud's names) makes version 2 prod's canary: challenger follows.
    workloads = {"MLFLOW_TRACKING_USERNAME": workload_user("fraud"),
                 "MLFLOW_TRACKING_PASSWORD": team_token(server[3], PLATFORM, "fraud")}
    done = signed(*canary, cwd=project, **workloads)
    assert done.returncode == 0, done.stderr
    assert done.stderr.splitlines() == ["wrote stacks/Pulumi.prod.yaml",
                                        f"alias challenger of {PROMOTED} -> version 2"]
    assert aliases_now(url, admin) == {"champion": "1", "challenger": "2"}
    # Then stable: champion moves, but removing challenger needs MANAGE, which the service account lacks. The
    # spec is written by then: exit 1, saying what is left and who may do it.
    done = signed(*stable, cwd=project, **workloads)
    assert done.returncode == 1
    assert done.stderr.splitlines()[-1] == (
        f"the registry's aliases were not all moved (MLflow at {url} refused removing alias 'challenger' of "
        f"registered model '{PROMOTED}' to the credentials in MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD "
        "(HTTP 403: Permission denied): it is team fraud's; removing an alias needs MANAGE on the model: sign on as "
        "one of its ml-engineers (its service account fraud-workloads has EDIT only)): alias champion of "
        f"{PROMOTED} should name version 2, and challenger not name it")
    assert aliases_now(url, admin) == {"champion": "2", "challenger": "2"}
    # Fraud's engineer (MANAGE) runs the same promotion again: the spec is so already, the alias left goes.
    started = time.monotonic()
    done = signed(*stable, cwd=project, MLFLOW_TRACKING_TOKEN=provider.id_token("alice@corp.example", [FRAUD]))
    print(f"\n[mlflow] promote (MLFLOW_TRACKING_TOKEN) {time.monotonic() - started:.1f}s")
    assert done.returncode == 0, done.stderr
    assert done.stderr.splitlines() == [f"alias challenger of {PROMOTED} removed",
                                        "stacks/Pulumi.prod.yaml: already so, not changed"]
    assert aliases_now(url, admin) == {"champion": "2"}
