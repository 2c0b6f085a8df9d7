"""oauth2-proxy's real chart (10.7.0) rendered with the sign-on proxy's values: the planned configuration file,
the client ID and secrets from the Secret ui-proxy as env (none in the values), the mirrored v7.15.6 image, a
restricted pod, and the Service the HTTPRoute names."""

from __future__ import annotations

from support import CHARTS_DIR, SERVICES, platform_spec
from validation import restricted_problems
from plinth.engine.charts import render_charts
from plinth.engine.offline import plan

MIRROR = "mirror.corp.internal/mirror"


def test_each_proxy_renders_as_planned(charts_dir, helm):
    spec = platform_spec(SERVICES, {
        "charts": {"source": str(CHARTS_DIR)},
        "network": {"cilium": {"enabled": True, "apiServer": {"host": "api.k8s.internal"}},
                    "loadBalancer": {"ranges": ["172.31.255.240/29"]}},
        "rbac": {"platformAdminGroup": "ml-admins"},
        "identity": {"oidc": {"issuer": "https://login.corp.internal/realms/ml",
                              "clients": {"kubernetes": "ml-kubernetes", "uiProxy": "ml-uis"}},
                     "uiProxy": {"enabled": True, "hosts": {"prometheus": "prometheus.models.plinth.internal",
                                                            "longhorn": "longhorn.models.plinth.internal"}}},
        "airgap": {"enabled": True, "mirror": {"registry": MIRROR, "charts": "oci://mirror.corp.internal/charts",
                                               "files": "https://files.corp.internal"}}})
    planned = plan(spec, "ui-proxy-chart")
    rendered = {r.resource.name: r for r in render_charts(planned, "1.34", charts_dir)
                if r.resource.name.startswith("ui-proxy-")}
    assert sorted(rendered) == ["ui-proxy-longhorn", "ui-proxy-prometheus"]
    for ui, r in (("prometheus", rendered["ui-proxy-prometheus"]), ("longhorn", rendered["ui-proxy-longhorn"])):
        assert r.note is None, r.note
        objects = {(o["kind"], o["metadata"]["name"]): o for o in r.objects}
        name = f"{ui}-sign-on"
        assert ("Secret", name) not in objects  # the Secret is Plinth's, from the stack
        config = objects["ConfigMap", name]["data"]["oauth2_proxy.cfg"]
        assert config.strip() == r.resource.inputs["values"]["config"]["configFile"].strip()  # the chart indents it
        pod = objects["Deployment", name]["spec"]["template"]["spec"]
        [container] = pod["containers"]
        assert container["image"] == f"{MIRROR}/oauth2-proxy/oauth2-proxy:v7.15.6"
        env = {e["name"]: e["valueFrom"]["secretKeyRef"] for e in container["env"] if "valueFrom" in e}
        assert env == {"OAUTH2_PROXY_CLIENT_ID": {"name": "ui-proxy", "key": "client-id"},
                       "OAUTH2_PROXY_CLIENT_SECRET": {"name": "ui-proxy", "key": "client-secret"},
                       "OAUTH2_PROXY_COOKIE_SECRET": {"name": "ui-proxy", "key": "cookie-secret"}}
        assert "--config=/etc/oauth2_proxy/oauth2_proxy.cfg" in container["args"]
        assert restricted_problems(pod) == []
        service = objects["Service", name]["spec"]
        assert (80, "http") in [(p["port"], p["targetPort"]) for p in service["ports"]]
        assert {"containerPort": 4180, "name": "http", "protocol": "TCP"} in container["ports"]
