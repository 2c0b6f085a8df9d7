#!/usr/bin/env bash
# Build the e2e acceptance-tier toolchain from the Go module proxy only.
#
#   BIN=$(tests/e2e/toolchain/build.sh | tail -n1)
#   tests/e2e/toolchain/build.sh --print-bin-dir   # no build: bin dir; rc 0 once the main key is complete,
#                                                  # 3 while a build makes it, else 1
#   tests/e2e/toolchain/build.sh --building        # rc 0 while a build is in progress (its tools appear one by one)
#
# Output: ${PLINTH_TOOLCHAIN_CACHE:-$HOME/.cache/plinth-toolchain}/<key>/bin with
#   pulumi                          CLI      (pulumi-cli/ consumer module)
#   pulumi-language-python          language host (pulumi-language-python/ module)
#   pulumi-language-python-exec     shim script, copied from sdk/v3@<installed python SDK>
#   pulumi-resource-pulumi-python   dynamic-provider shim script, same origin
#   kube-apiserver                  (kube-apiserver/ module, version-stamped)
#   kube-controller-manager         (same module; workload controllers, SAs, GC, ...)
#   kube-scheduler                  (same module)
#   kwok                            (kwok/ module; simulated nodes, pods' status)
#   etcd                            (etcd/ module)
#   helm                            (helm/ module; the chart tier's `helm template`/`lint`)
#   weed                            (seaweedfs/ module; SeaweedFS with its S3 API: the backup restore drill)
#   promtool                        (prometheus/ module; `promtool check/test rules`: the alert rule tests)
#   prometheus                      (prometheus-server/ module; the server the canary gate test reads)
#   alertmanager, amtool            (alertmanager/ module; the alert routing test)
#   mockoidc                        (mockoidc/ module: a small main over github.com/oauth2-proxy/mockoidc;
#                                   the identity provider of the sign-on test)
#   oauth2-proxy                    (oauth2-proxy/ module; the UIs' sign-on proxy, run with Plinth's rendered
#                                   configuration in front of a local upstream)
#   pulumi-resource-kubernetes      PLINTH_KUBERNETES_PROVIDER if set, else the prebuilt
#                                   plugin in ../shared/toolchain (sha256-checked)
# <key> encodes every version plus a hash of BUILD_REV and the consumer
# modules' go.mod/go.sum, so a second run with the same key only checks files
# and prints the bin dir (seconds).  Progress goes to stderr; the last stdout
# line is the bin dir.
#
# Versions are pinned in the consumer go.mod files (single source of truth).
# The Go module proxy reachable here does not serve everything (answers 403):
#   * github.com/pulumi/pulumi/pkg/v3: newest zip served is v3.259.0 (the Python
#     SDK is newer); the CLI speaks the same protocol, so the mismatch is fine.
#   * github.com/pulumi/pulumi/sdk/python/cmd/pulumi-language-python/v3: not
#     served at all; the last release that shipped the Python language host
#     inside sdk/v3 (v3.68.0) is built instead, paired with the current exec shim.
#   * github.com/pulumi/pulumi-kubernetes/provider/v4: not served at any version,
#     so pulumi-resource-kubernetes is NOT built: it is taken from
#     PLINTH_KUBERNETES_PROVIDER=/path/to/binary, else decompressed from
#     $PLINTH_SHARED/toolchain/pulumi-resource-kubernetes.xz (default PLINTH_SHARED:
#     the `shared` folder beside the checkout) after checking its sha256 below.
#     It is copied into the bin dir (on PATH it is used as an "ambient" plugin).
#
# Running pulumi against the local API server (tests/e2e/controlplane.py):
#   PATH=$BIN:$VENV/bin:$PATH                    # CLI finds language host + plugins on PATH;
#                                                # $VENV = the project's virtualenv (pulumi,
#                                                # pulumi-kubernetes): the v3.68 language host
#                                                # ignores Pulumi.yaml's `virtualenv` option
#                                                # (newer CLIs send it over RPC) and runs the
#                                                # first python3 on PATH (or $PULUMI_PYTHON_CMD)
#   PULUMI_DISABLE_AUTOMATIC_PLUGIN_ACQUISITION=true
#   PULUMI_SKIP_UPDATE_CHECK=true
#   PULUMI_BACKEND_URL=file://<state dir>        # no Pulumi Cloud
#   PULUMI_CONFIG_PASSPHRASE=test                # local secrets provider
#   PULUMI_HOME=<dir>                            # optional: isolate ~/.pulumi
#   KUBECONFIG=<controlplane.kubeconfig_path>    # or Provider(kubeconfig=...)
#
# Knobs: PYTHON (default python3; its installed `pulumi` picks the exec shim
# version), PLINTH_TOOLCHAIN_CACHE, PLINTH_TOOLCHAIN_FORCE=1 (rebuild key),
# GOCACHE/GOMODCACHE (go defaults), PLINTH_KUBERNETES_PROVIDER (see above).
# Needs Go >= 1.26 (etcd v3.6.16's go.mod); GOTOOLCHAIN defaults to local (no toolchain downloads).
set -euo pipefail

# Bump when build flags/steps change in a way the go.mod/go.sum files don't show.
BUILD_REV=1
PRINT_ONLY=0
case "${1:-}" in
  "") ;;
  --print-bin-dir) PRINT_ONLY=1 ;;  # never builds; exit codes below (`--print-bin-dir`)
  --building) PRINT_ONLY=2 ;;       # exit 0 if a build is in progress, else 1; never builds
  *) echo "usage: $0 [--print-bin-dir|--building]" >&2; exit 2 ;;
esac

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
PYTHON=${PYTHON:-python3}
CACHE_ROOT=${PLINTH_TOOLCHAIN_CACHE:-$HOME/.cache/plinth-toolchain}
export GOFLAGS=-mod=mod GOTOOLCHAIN=${GOTOOLCHAIN:-local} CGO_ENABLED=0

T0=$(date +%s)
log() { echo "[toolchain +$(( $(date +%s) - T0 ))s] $*" >&2; }

# A build in progress says so, its pid in $BUILDING. `--print-bin-dir` prints the bin dir (the last stdout line) and
# exits 0 once the Kubernetes tools' key is complete (`.complete`: every binary the engine and the live cluster run,
# the provider, the CRDs and KWOK's stages), 3 while a build is making it, 1 without either. The tools built after it
# (weed, promtool, ...) appear in the bin dir one by one while the build goes on. The tests wait (tests/e2e/binaries.py)
# for exactly what they need, instead of skipping, so CI runs every other test meanwhile: the chart tier as soon as
# helm and the CRDs are there, the engine's tiers when the key is complete, each other tool's tests when it is.
BUILDING="$CACHE_ROOT/building.pid"
building() { local pid; pid=$(cat "$BUILDING" 2>/dev/null) && [[ $pid =~ ^[0-9]+$ ]] && kill -0 "$pid" 2>/dev/null; }
if [[ $PRINT_ONLY == 2 ]]; then building; exit; fi
if [[ $PRINT_ONLY == 0 ]]; then
  mkdir -p "$CACHE_ROOT"
  echo $$ > "$BUILDING"
  trap 'rm -f "$BUILDING"' EXIT
fi

# version of module $2 required in consumer module dir $1
modver() { awk -v m="$2" '{ if ($1 == "require") { $1 = ""; $0 = $0 } }
  $1 == m && $2 ~ /^v/ { print $2; exit }' "$HERE/$1/go.mod"; }

PULUMI_VERSION=$(modver pulumi-cli github.com/pulumi/pulumi/pkg/v3)
LANGHOST_VERSION=$(modver pulumi-language-python github.com/pulumi/pulumi/sdk/v3)
K8S_VERSION=$(modver kube-apiserver k8s.io/kubernetes)
ETCD_VERSION=$(modver etcd go.etcd.io/etcd/server/v3)
HELM_VERSION=$(modver helm helm.sh/helm/v3)
KWOK_VERSION=$(modver kwok sigs.k8s.io/kwok)
WEED_VERSION=$(modver seaweedfs github.com/seaweedfs/seaweedfs)  # a pseudo-version: the commit is its last part
PROM_VERSION=$(modver prometheus github.com/prometheus/prometheus)  # v0.3MM.P is Prometheus 3.MM.P
PROM_SERVER_VERSION=$(modver prometheus-server github.com/prometheus/prometheus)
AM_VERSION=$(modver alertmanager github.com/prometheus/alertmanager)
MOCKOIDC_VERSION=$(modver mockoidc github.com/oauth2-proxy/mockoidc)  # a pseudo-version, like weed's
OAUTH2_PROXY_VERSION=$(modver oauth2-proxy github.com/oauth2-proxy/oauth2-proxy/v7)
PY_SDK_VERSION=$("$PYTHON" -c 'import importlib.metadata as m; print(m.version("pulumi"))' 2>/dev/null || true)
if [[ -z "$PY_SDK_VERSION" ]]; then
  log "WARN: '$PYTHON' has no 'pulumi' package; exec shim taken from sdk/v3@$PULUMI_VERSION"
  PY_SDK_VERSION=${PULUMI_VERSION#v}
fi
PY_K8S_VERSION=$("$PYTHON" -c 'import importlib.metadata as m; print(m.version("pulumi-kubernetes"))' 2>/dev/null || echo none)
[[ "v$PY_SDK_VERSION" == "$PULUMI_VERSION" ]] ||
  log "note: pulumi CLI $PULUMI_VERSION (newest on the proxy) vs Python SDK $PY_SDK_VERSION"

for v in PULUMI_VERSION LANGHOST_VERSION K8S_VERSION ETCD_VERSION HELM_VERSION KWOK_VERSION WEED_VERSION PROM_VERSION \
         PROM_SERVER_VERSION AM_VERSION MOCKOIDC_VERSION OAUTH2_PROXY_VERSION; do
  [[ -n "${!v}" ]] || { log "ERROR: could not read $v from the consumer go.mod files"; exit 1; }
done
K8S_MINOR=${K8S_VERSION#v1.}; K8S_MINOR=${K8S_MINOR%%.*}

GO_VERSION=$(go env GOVERSION)
# weed, promtool, prometheus, alertmanager, mockoidc and oauth2-proxy have keys of their own (built apart, linked into
# bin/): a bump of one rebuilds it alone, and it leaves the Kubernetes tools' cache valid.
OWN_KEY_MODULES=(seaweedfs prometheus prometheus-server alertmanager mockoidc oauth2-proxy)
HASH=$( (echo "rev=$BUILD_REV"; cd "$HERE" && for f in ./*/go.mod ./*/go.sum; do
  [[ " ${OWN_KEY_MODULES[*]} " == *" ${f:2:-7} "* ]] || cat "$f"; done) | sha256sum | cut -c1-10)
KEY="pulumi-${PULUMI_VERSION}_langpy-${LANGHOST_VERSION}_sdk-v${PY_SDK_VERSION}_k8s-${K8S_VERSION}_etcd-${ETCD_VERSION}_helm-${HELM_VERSION}_kwok-${KWOK_VERSION}_${GO_VERSION}_${HASH}"
BIN="$CACHE_ROOT/$KEY/bin"
# own_dir <name> <module dir> <version> [build tags]: the cache dir of a tool with a key of its own (its go.mod, go.sum,
# the main.go of ours where the module has one, and its build tags where it has some)
own_dir() { echo "$CACHE_ROOT/$1-${3}_${GO_VERSION}_$( (echo "rev=$BUILD_REV"; [[ -z ${4:-} ]] || echo "tags=$4"
  for f in "$HERE/$2"/{go.mod,go.sum,main.go}; do [[ ! -f $f ]] || cat "$f"; done) | sha256sum | cut -c1-10)"; }
# promtool and the server: the file and HTTP service discovery only (remove_all_sd drops the cloud SDKs from the
# build; promtool keeps Kubernetes', which it imports itself). The tests check and test rules and create blocks, and
# give the server no targets. The same tags for both: the server's build reuses promtool's compiled packages.
PROM_TAGS=netgo,remove_all_sd
WEED_DIR=$(own_dir weed seaweedfs "$WEED_VERSION")
PROM_DIR=$(own_dir promtool prometheus "$PROM_VERSION" "$PROM_TAGS")
PROM_SERVER_DIR=$(own_dir prometheus prometheus-server "$PROM_SERVER_VERSION")
AM_DIR=$(own_dir alertmanager alertmanager "$AM_VERSION")
MOCKOIDC_DIR=$(own_dir mockoidc mockoidc "$MOCKOIDC_VERSION")
OAUTH2_PROXY_DIR=$(own_dir oauth2-proxy oauth2-proxy "$OAUTH2_PROXY_VERSION")

# Linked into bin/ anew when a key changed (a bump): the link then points at the previous key's build.
link_tools() {
  for tool in "$WEED_DIR/weed" "$PROM_DIR/promtool" "$PROM_SERVER_DIR/prometheus" "$AM_DIR/alertmanager" "$AM_DIR/amtool" \
              "$MOCKOIDC_DIR/mockoidc" "$OAUTH2_PROXY_DIR/oauth2-proxy"; do
    if [[ -x "$tool" && "$(readlink "$BIN/${tool##*/}" || true)" != "$tool" ]]; then ln -sfn "$tool" "$BIN/${tool##*/}"; fi
  done
}

# pulumi-resource-kubernetes: not obtainable from the proxy (see header).
install_provider() {
  PROVIDER_SHA256=13ad06faf253bf85ac8591bc7e7c5fbd8c0c334180d2ac0155d9ba960f3c8b1c  # v4.32.0+27.g94977969d
  SHARED=${PLINTH_SHARED:-$(cd "$HERE/../../../.." && pwd)/shared}
  if [[ -n "${PLINTH_KUBERNETES_PROVIDER:-}" ]]; then
    install -m 0755 "$PLINTH_KUBERNETES_PROVIDER" "$BIN/pulumi-resource-kubernetes"
    log "pulumi-resource-kubernetes copied from $PLINTH_KUBERNETES_PROVIDER"
  elif [[ -x "$BIN/pulumi-resource-kubernetes" ]]; then
    log "pulumi-resource-kubernetes: present"
  elif [[ $PRINT_ONLY == 0 && -f "$SHARED/toolchain/pulumi-resource-kubernetes.xz" ]]; then
    xz -dc "$SHARED/toolchain/pulumi-resource-kubernetes.xz" > "$BIN/.provider.tmp"
    if ! echo "$PROVIDER_SHA256  $BIN/.provider.tmp" | sha256sum -c --quiet; then
      rm -f "$BIN/.provider.tmp"
      log "ERROR: $SHARED/toolchain/pulumi-resource-kubernetes.xz does not hold the expected binary (sha256 $PROVIDER_SHA256)"
      exit 1
    fi
    chmod 0755 "$BIN/.provider.tmp" && mv -f "$BIN/.provider.tmp" "$BIN/pulumi-resource-kubernetes"
    log "pulumi-resource-kubernetes: from $SHARED/toolchain (sha256 checked)"
  else
    log "WARN: no pulumi-resource-kubernetes (python pulumi-kubernetes $PY_K8S_VERSION):" \
        "provider/v4 is not served by the Go module proxy and $SHARED/toolchain has none;" \
        "kubernetes resources cannot be deployed"
  fi
}

# Policy packs: the CLI starts a Python pack through the language host's RunPlugin, whose request the
# v3.68 host predates; its SDK ships the analyzer shim older CLIs used instead. Installed under the
# runtime name `python-shim` (one no language host claims, so the CLI falls back to the shim); the
# acceptance tier's copy of policies/ names that runtime.
install_policy_shim() {
  if [[ ! -x "$BIN/pulumi-analyzer-policy-python-shim" ]]; then
    tmpd=$(mktemp -d)
    SHIM_DIR=$(cd "$tmpd" && go mod download -json "github.com/pulumi/pulumi/sdk/v3@$LANGHOST_VERSION" |
      "$PYTHON" -c 'import json,sys; print(json.load(sys.stdin)["Dir"])')
    rmdir "$tmpd"
    install -m 0755 "$SHIM_DIR/python/dist/pulumi-analyzer-policy-python" "$BIN/pulumi-analyzer-policy-python-shim"
    log "policy analyzer shim from sdk/v3@$LANGHOST_VERSION"
  fi
}

# Cilium's CRDs (CiliumNetworkPolicy, ...): the Cilium operator registers them when it starts, which
# needs nodes. The test API server has none, so the tiers install them from the cilium module at the
# catalog's Cilium version instead -- a stand-in for that registration.
# KWOK's stages (how a simulated node and its pods change state): the kwok binary takes them from a
# config file, so the tier concatenates the module's "fast" node and pod stages (a node is Ready at
# once; a scheduled pod is Running and Ready at once; a Job's pod Succeeds; a deleted pod goes).
fetch_crds_and_stages() {
  CILIUM_VERSION=$("$PYTHON" -c 'from plinth.catalog import CHARTS; print(CHARTS["cilium"].version)' 2>/dev/null || true)
  CILIUM_CRDS="$CACHE_ROOT/$KEY/crds/cilium-$CILIUM_VERSION"
  # The kinds Plinth creates: network policies, and the Gateway's load-balancer address pool and L2 announcements.
  CILIUM_CRD_FILES=(v2/ciliumnetworkpolicies.yaml v2/ciliumclusterwidenetworkpolicies.yaml
                    v2/ciliumloadbalancerippools.yaml v2alpha1/ciliuml2announcementpolicies.yaml)
  if [[ -n "$CILIUM_VERSION" && ! -f "$CILIUM_CRDS/.complete-${#CILIUM_CRD_FILES[@]}" ]]; then
    tmpd=$(mktemp -d)
    CILIUM_DIR=$(cd "$tmpd" && go mod download -json "github.com/cilium/cilium@v$CILIUM_VERSION" |
      "$PYTHON" -c 'import json,sys; print(json.load(sys.stdin)["Dir"])')
    rmdir "$tmpd"
    mkdir -p "$CILIUM_CRDS"
    for file in "${CILIUM_CRD_FILES[@]}"; do
      cp "$CILIUM_DIR/pkg/k8s/apis/cilium.io/client/crds/$file" "$CILIUM_CRDS/"
    done
    touch "$CILIUM_CRDS/.complete-${#CILIUM_CRD_FILES[@]}"
    log "cilium CRDs from github.com/cilium/cilium@v$CILIUM_VERSION"
  fi
  KWOK_STAGES="$CACHE_ROOT/$KEY/kwok-stages/$KWOK_VERSION.yaml"
  if [[ ! -f "$KWOK_STAGES" ]]; then
    tmpd=$(mktemp -d)
    KWOK_DIR=$(cd "$tmpd" && go mod download -json "sigs.k8s.io/kwok@$KWOK_VERSION" |
      "$PYTHON" -c 'import json,sys; print(json.load(sys.stdin)["Dir"])')
    rmdir "$tmpd"
    mkdir -p "$(dirname "$KWOK_STAGES")"
    for f in node/fast/node-initialize pod/fast/pod-ready pod/fast/pod-complete pod/fast/pod-delete; do
      echo "---"; cat "$KWOK_DIR/kustomize/stage/$f.yaml"
    done > "$KWOK_STAGES.tmp"
    mv -f "$KWOK_STAGES.tmp" "$KWOK_STAGES"
    log "kwok stages from sigs.k8s.io/kwok@$KWOK_VERSION"
  fi
}

ALL=(pulumi pulumi-language-python pulumi-language-python-exec pulumi-resource-pulumi-python
     kube-apiserver kube-controller-manager kube-scheduler kwok etcd helm)
if [[ "${PLINTH_TOOLCHAIN_FORCE:-0}" == 1 && $PRINT_ONLY == 0 ]]; then rm -rf "$CACHE_ROOT/$KEY"; fi
have_all=1
for b in "${ALL[@]}"; do [[ -x "$BIN/$b" ]] || have_all=0; done
if [[ $have_all == 1 && -f "$CACHE_ROOT/$KEY/.complete" ]]; then
  log "cache hit: $BIN"
elif [[ $PRINT_ONLY == 1 ]]; then
  if building; then log "a build is in progress (pid $(cat "$BUILDING")): $BIN"; echo "$BIN"; exit 3; fi
  log "not built yet: $BIN (run $0)"
  exit 1
else
  mkdir -p "$BIN"
  # Fetched first (downloads, no compiling): the chart tier needs the CRDs and helm only.
  fetch_crds_and_stages
  log "building into $BIN (go $GO_VERSION)"

  # gobuild <name> <module dir> <package> [ldflags...]
  gobuild() {
    local name=$1 dir=$2 pkg=$3; shift 3
    if [[ -x "$BIN/$name" ]]; then log "$name: present, skipped"; return; fi
    local t=$(date +%s)
    log "$name: go build $pkg"
    (cd "$HERE/$dir" && go build -trimpath -ldflags "-s -w $*" -o "$BIN/.$name.tmp" "$pkg")
    mv -f "$BIN/.$name.tmp" "$BIN/$name"
    log "$name: done in $(( $(date +%s) - t ))s"
  }

  # helm: the ldflags upstream's Makefile sets -- the version, and the default
  # Capabilities.KubeVersion from the client-go it links (v0.N -> v1.N); without
  # them `helm template` assumes KubeVersion v1.20 and charts needing more fail.
  HELM_CLIENT_GO=$(cd "$HERE/helm" && go list -f '{{.Version}}' -m k8s.io/client-go)
  HELM_K8S_MINOR=$(echo "${HELM_CLIENT_GO#v0.}" | cut -d. -f1)
  HELM_PKG=helm.sh/helm/v3
  gobuild helm helm $HELM_PKG/cmd/helm \
    "-X $HELM_PKG/internal/version.version=$HELM_VERSION" \
    "-X $HELM_PKG/internal/version.metadata=" "-X $HELM_PKG/internal/version.gitTreeState=clean" \
    "-X $HELM_PKG/pkg/lint/rules.k8sVersionMajor=1" "-X $HELM_PKG/pkg/lint/rules.k8sVersionMinor=$HELM_K8S_MINOR" \
    "-X $HELM_PKG/pkg/chartutil.k8sVersionMajor=1" "-X $HELM_PKG/pkg/chartutil.k8sVersionMinor=$HELM_K8S_MINOR"

  gobuild etcd etcd go.etcd.io/etcd/server/v3

  K8S_LDFLAGS=(
    "-X k8s.io/component-base/version.gitVersion=$K8S_VERSION"
    "-X k8s.io/component-base/version.gitMajor=1"
    "-X k8s.io/component-base/version.gitMinor=$K8S_MINOR"
    "-X k8s.io/component-base/version.gitTreeState=clean"
    "-X k8s.io/client-go/pkg/version.gitVersion=$K8S_VERSION"
    "-X k8s.io/client-go/pkg/version.gitMajor=1"
    "-X k8s.io/client-go/pkg/version.gitMinor=$K8S_MINOR"
    "-X k8s.io/client-go/pkg/version.gitTreeState=clean"
  )
  gobuild kube-apiserver kube-apiserver k8s.io/kubernetes/cmd/kube-apiserver "${K8S_LDFLAGS[@]}"
  gobuild kube-controller-manager kube-apiserver k8s.io/kubernetes/cmd/kube-controller-manager "${K8S_LDFLAGS[@]}"
  gobuild kube-scheduler kube-apiserver k8s.io/kubernetes/cmd/kube-scheduler "${K8S_LDFLAGS[@]}"

  gobuild kwok kwok sigs.k8s.io/kwok/cmd/kwok

  gobuild pulumi-language-python pulumi-language-python \
    github.com/pulumi/pulumi/sdk/v3/python/cmd/pulumi-language-python \
    "-X github.com/pulumi/pulumi/sdk/v3/go/common/version.Version=$LANGHOST_VERSION"

  gobuild pulumi pulumi-cli github.com/pulumi/pulumi/pkg/v3/cmd/pulumi \
    "-X github.com/pulumi/pulumi/sdk/v3/go/common/version.Version=$PULUMI_VERSION"

  # Scripts shipped inside the sdk/v3 module at the installed Python SDK's version.
  t=$(date +%s)
  tmpd=$(mktemp -d)  # outside any module: `go mod download` must not touch our go.sum files
  SDK_DIR=$(cd "$tmpd" && go mod download -json "github.com/pulumi/pulumi/sdk/v3@v$PY_SDK_VERSION" |
    "$PYTHON" -c 'import json,sys; print(json.load(sys.stdin)["Dir"])')
  rmdir "$tmpd"
  install -m 0755 "$SDK_DIR/python/cmd/pulumi-language-python-exec" "$BIN/pulumi-language-python-exec"
  install -m 0755 "$SDK_DIR/python/dist/pulumi-resource-pulumi-python" "$BIN/pulumi-resource-pulumi-python"
  log "python shims from sdk/v3@v$PY_SDK_VERSION: done in $(( $(date +%s) - t ))s"

  install_provider
  install_policy_shim
  touch "$CACHE_ROOT/$KEY/.complete"
  log "cache size: $(du -sh "$CACHE_ROOT/$KEY" | cut -f1)"
fi
install_provider  # PLINTH_KUBERNETES_PROVIDER replaces the key's copy on every call

# weed (the restore drill's S3 server), in its own key, linked into bin/.
if [[ ! -x "$WEED_DIR/weed" && $PRINT_ONLY == 0 ]]; then
  t=$(date +%s)
  mkdir -p "$WEED_DIR"
  log "weed: go build github.com/seaweedfs/seaweedfs/weed into $WEED_DIR"
  # `weed version` names the commit, as upstream's release builds do.
  (cd "$HERE/seaweedfs" && go build -trimpath -ldflags \
    "-s -w -X github.com/seaweedfs/seaweedfs/weed/util/version.COMMIT=${WEED_VERSION##*-}" \
    -o "$WEED_DIR/.weed.tmp" github.com/seaweedfs/seaweedfs/weed)
  mv -f "$WEED_DIR/.weed.tmp" "$WEED_DIR/weed"
  log "weed: done in $(( $(date +%s) - t ))s"
  link_tools
fi

# promtool, alertmanager and amtool (the alert rule and routing tests), each module in its own key, linked into
# bin/, stamped with their version as upstream's release builds are.
PROM_STAMP="-X github.com/prometheus/common/version.Version"
PROM_MINOR=$(echo "$PROM_VERSION" | cut -d. -f2)
PROM_RELEASE="3.$(( 10#$PROM_MINOR - 300 )).${PROM_VERSION##*.}"  # module v0.3MM.P is release 3.MM.P
PROM_SERVER_MINOR=$(echo "$PROM_SERVER_VERSION" | cut -d. -f2)
PROM_SERVER_RELEASE="3.$(( 10#$PROM_SERVER_MINOR - 300 )).${PROM_SERVER_VERSION##*.}"
if [[ ! -x "$PROM_DIR/promtool" && $PRINT_ONLY == 0 ]]; then
  t=$(date +%s)
  mkdir -p "$PROM_DIR"
  log "promtool: go build github.com/prometheus/prometheus/cmd/promtool into $PROM_DIR"
  (cd "$HERE/prometheus" && go build -trimpath -tags "$PROM_TAGS" -ldflags "-s -w $PROM_STAMP=$PROM_RELEASE" \
    -o "$PROM_DIR/.promtool.tmp" github.com/prometheus/prometheus/cmd/promtool)
  mv -f "$PROM_DIR/.promtool.tmp" "$PROM_DIR/promtool"
  log "promtool: done in $(( $(date +%s) - t ))s"
  link_tools
fi
# The server: no builtinassets (the module zip lacks the web UI's build output; the HTTP API, all the tests use, needs
# none).
if [[ ! -x "$PROM_SERVER_DIR/prometheus" && $PRINT_ONLY == 0 ]]; then
  t=$(date +%s)
  mkdir -p "$PROM_SERVER_DIR"
  log "prometheus: go build github.com/prometheus/prometheus/cmd/prometheus into $PROM_SERVER_DIR"
  (cd "$HERE/prometheus-server" && go build -trimpath -tags "$PROM_TAGS" \
    -ldflags "-s -w $PROM_STAMP=$PROM_SERVER_RELEASE" -o "$PROM_SERVER_DIR/.prometheus.tmp" \
    github.com/prometheus/prometheus/cmd/prometheus)
  mv -f "$PROM_SERVER_DIR/.prometheus.tmp" "$PROM_SERVER_DIR/prometheus"
  log "prometheus: done in $(( $(date +%s) - t ))s"
  link_tools
fi
if [[ ! -x "$AM_DIR/amtool" && $PRINT_ONLY == 0 ]]; then
  t=$(date +%s)
  mkdir -p "$AM_DIR"
  # The module zip lacks the web UI's build output (ui/app/dist, made by npm), which the server embeds: build
  # from a copy of the module with a placeholder page there (the API, all the tests use, is unaffected).
  tmpd=$(mktemp -d)
  AM_SRC=$(cd "$tmpd" && go mod download -json "github.com/prometheus/alertmanager@$AM_VERSION" |
    "$PYTHON" -c 'import json,sys; print(json.load(sys.stdin)["Dir"])')
  rmdir "$tmpd"
  rm -rf "$AM_DIR/src" && cp -r "$AM_SRC" "$AM_DIR/src" && chmod -R u+w "$AM_DIR/src"
  for ui in elm mantine; do
    mkdir -p "$AM_DIR/src/ui/app/dist/$ui"
    echo '<!doctype html><title>Alertmanager</title><p>Web UI not built; the API serves.</p>' \
      > "$AM_DIR/src/ui/app/dist/$ui/index.html"
  done
  # -modfile: the copy replaces the module in a scratch go.mod; the consumer module's files stay as they are.
  cp "$HERE/alertmanager/go.mod" "$AM_DIR/go.mod" && cp "$HERE/alertmanager/go.sum" "$AM_DIR/go.sum"
  go mod edit -replace "github.com/prometheus/alertmanager=$AM_DIR/src" "$AM_DIR/go.mod"
  for name in alertmanager amtool; do
    log "$name: go build github.com/prometheus/alertmanager/cmd/$name into $AM_DIR"
    (cd "$HERE/alertmanager" && go build -modfile="$AM_DIR/go.mod" -trimpath -tags netgo \
      -ldflags "-s -w $PROM_STAMP=${AM_VERSION#v}" -o "$AM_DIR/.$name.tmp" "github.com/prometheus/alertmanager/cmd/$name")
    mv -f "$AM_DIR/.$name.tmp" "$AM_DIR/$name"
  done
  rm -rf "$AM_DIR/src" "$AM_DIR/go.mod" "$AM_DIR/go.sum"
  log "alertmanager, amtool: done in $(( $(date +%s) - t ))s"
  link_tools
fi

# mockoidc (the sign-on test's identity provider), in its own key (its main.go included).
if [[ ! -x "$MOCKOIDC_DIR/mockoidc" && $PRINT_ONLY == 0 ]]; then
  t=$(date +%s)
  mkdir -p "$MOCKOIDC_DIR"
  log "mockoidc: go build ./mockoidc (github.com/oauth2-proxy/mockoidc $MOCKOIDC_VERSION) into $MOCKOIDC_DIR"
  (cd "$HERE/mockoidc" && go build -trimpath -ldflags "-s -w" -o "$MOCKOIDC_DIR/.mockoidc.tmp" .)
  mv -f "$MOCKOIDC_DIR/.mockoidc.tmp" "$MOCKOIDC_DIR/mockoidc"
  log "mockoidc: done in $(( $(date +%s) - t ))s"
  link_tools
fi
# oauth2-proxy (the UIs' sign-on proxy, run by its test with Plinth's rendered configuration), in its own key,
# stamped with its version as upstream's release builds are.
if [[ ! -x "$OAUTH2_PROXY_DIR/oauth2-proxy" && $PRINT_ONLY == 0 ]]; then
  t=$(date +%s)
  mkdir -p "$OAUTH2_PROXY_DIR"
  log "oauth2-proxy: go build github.com/oauth2-proxy/oauth2-proxy/v7 into $OAUTH2_PROXY_DIR"
  (cd "$HERE/oauth2-proxy" && go build -trimpath -ldflags \
    "-s -w -X github.com/oauth2-proxy/oauth2-proxy/v7/pkg/version.VERSION=$OAUTH2_PROXY_VERSION" \
    -o "$OAUTH2_PROXY_DIR/.oauth2-proxy.tmp" github.com/oauth2-proxy/oauth2-proxy/v7)
  mv -f "$OAUTH2_PROXY_DIR/.oauth2-proxy.tmp" "$OAUTH2_PROXY_DIR/oauth2-proxy"
  log "oauth2-proxy: done in $(( $(date +%s) - t ))s"
  link_tools
fi
link_tools  # a key bumped since: its tool is linked anew
log "total ${SECONDS}s"
echo "$BIN"
