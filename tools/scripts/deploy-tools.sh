#!/bin/sh
# The tools and schemas the deployment tests need, in a cache outside the repository
# (`make deploy-tools` sets the versions; the Makefile pins them):
#   $DEPLOY_CACHE/bin/helm, $DEPLOY_CACHE/bin/kubeconform    built with go install
#   $DEPLOY_CACHE/schemas/kubernetes/...   kubeconform's schemas: the pinned Kubernetes
#     release's OpenAPI documents and the Prometheus Operator's CRDs (ServiceMonitor,
#     PodMonitor, PrometheusRule), written by tools/scripts/kubeconform_schemas.py
#   $DEPLOY_CACHE/schemas/compose-spec.json   the Compose specification's JSON schema
# All of it comes from the Go module proxy; each step is skipped when its output for the
# pinned version is already there.
set -eu
: "${DEPLOY_CACHE:?}" "${HELM_VERSION:?}" "${KUBECONFORM_VERSION:?}" "${KUBERNETES_VERSION:?}"
: "${PROMETHEUS_OPERATOR_VERSION:?}" "${COMPOSE_GO_VERSION:?}"
here=$(cd "$(dirname "$0")" && pwd)
bin=$DEPLOY_CACHE/bin
mkdir -p "$bin" "$DEPLOY_CACHE/schemas"
# Outside any module: go install and go mod download take the pinned versions as given.
cd "$DEPLOY_CACHE"

# Records which version a cached output came from, so a new pin replaces it.
stamp() { echo "$2" > "$1.version"; }
current() { [ -e "$1" ] && [ "$(cat "$1.version" 2>/dev/null)" = "$2" ]; }

if ! current "$bin/helm" "$HELM_VERSION"; then
  echo "deploy-tools: helm $HELM_VERSION"
  GOBIN=$bin go install "helm.sh/helm/v3/cmd/helm@$HELM_VERSION"
  stamp "$bin/helm" "$HELM_VERSION"
fi
if ! current "$bin/kubeconform" "$KUBECONFORM_VERSION"; then
  echo "deploy-tools: kubeconform $KUBECONFORM_VERSION"
  GOBIN=$bin go install "github.com/yannh/kubeconform/cmd/kubeconform@$KUBECONFORM_VERSION"
  stamp "$bin/kubeconform" "$KUBECONFORM_VERSION"
fi

# The directory of a module version in Go's module cache.
module_dir() {
  go mod download -json "$1" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p'
}

schemas=$DEPLOY_CACHE/schemas/kubernetes
schemas_version="$KUBERNETES_VERSION prometheus-operator $PROMETHEUS_OPERATOR_VERSION"
if ! current "$schemas" "$schemas_version"; then
  echo "deploy-tools: Kubernetes $KUBERNETES_VERSION and Prometheus Operator" \
    "$PROMETHEUS_OPERATOR_VERSION schemas"
  kubernetes=$(module_dir "k8s.io/kubernetes@$KUBERNETES_VERSION")
  operator=$(module_dir "github.com/prometheus-operator/prometheus-operator@$PROMETHEUS_OPERATOR_VERSION")
  rm -rf "$schemas"
  crds=$operator/jsonnet/prometheus-operator
  python3 "$here/kubeconform_schemas.py" "$schemas" \
    --openapi-v3 "$kubernetes/api/openapi-spec/v3" \
    --crd "$crds/servicemonitors-crd.json" --crd "$crds/podmonitors-crd.json" \
    --crd "$crds/prometheusrules-crd.json"
  stamp "$schemas" "$schemas_version"
fi

compose=$DEPLOY_CACHE/schemas/compose-spec.json
if ! current "$compose" "$COMPOSE_GO_VERSION"; then
  echo "deploy-tools: Compose specification schema (compose-go $COMPOSE_GO_VERSION)"
  source=$(module_dir "github.com/compose-spec/compose-go/v2@$COMPOSE_GO_VERSION")
  cp "$source/schema/compose-spec.json" "$compose"
  chmod u+w "$compose"
  stamp "$compose" "$COMPOSE_GO_VERSION"
fi
