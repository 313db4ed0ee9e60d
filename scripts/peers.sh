# Sourced by scripts/test.sh and scripts/compare-flagger.sh: builds the real tier's
# peers from the Go modules pinned in tests/ (once per version, into a cache outside
# the repository) and exports where they are:
#   SERIN_ISTIO_CRDS, SERIN_GATEWAY_API_CRDS (the CRD YAML their modules ship),
#   SERIN_HELM (helm from helm.sh/helm/v3), and with `peers_flagger`:
#   SERIN_FLAGGER (flagger from github.com/fluxcd/flagger), SERIN_FLAGGER_MODULE (its
#   module directory: CRDs, RBAC), SERIN_HEY (hey from github.com/rakyll/hey).
# Needs: the repository root as the working directory, go on PATH.

serin_cache="${SERIN_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/serin}"

# module_dir MODULE_DIR MODULE: the module cache directory of MODULE as MODULE_DIR's
# go.mod pins it (downloaded if needed).
module_dir() {
  (cd "$1" && go mod download -json "$2" | sed -n 's/^\t"Dir": "\(.*\)",$/\1/p')
}

# go_tool MODULE_DIR PACKAGE NAME: builds PACKAGE (a tool of MODULE_DIR's go.mod) once
# per version of its module into the cache; prints the binary's path.
go_tool() {
  local dir="$1" pkg="$2" name="$3" version bin
  version="$(cd "$dir" && go list -f '{{.Module.Version}}' "$pkg")"
  bin="$serin_cache/$name-$version/$name"
  if [ ! -x "$bin" ]; then
    echo "building $name $version from its Go module (cached afterwards)" >&2
    mkdir -p "$(dirname "$bin")"
    local start=$SECONDS
    (cd "$dir" && go build -trimpath -o "$bin.tmp" "$pkg")
    mv "$bin.tmp" "$bin"
    echo "built $name in $((SECONDS - start))s" >&2
  fi
  echo "$bin"
}

peers_cluster() {
  SERIN_CLUSTER_BIN="$(scripts/cluster.sh build)"
  SERIN_HELM="$(go_tool tests/cluster helm.sh/helm/v3/cmd/helm helm)"
  SERIN_ISTIO_CRDS="$(module_dir tests/cluster istio.io/api)/kubernetes/customresourcedefinitions.gen.yaml"
  [ -f "$SERIN_ISTIO_CRDS" ] || { echo "Istio CRDs not found in the istio.io/api module ($SERIN_ISTIO_CRDS)" >&2; return 1; }
  SERIN_GATEWAY_API_CRDS="$(module_dir tests/cluster sigs.k8s.io/gateway-api)/config/crd/standard"
  [ -d "$SERIN_GATEWAY_API_CRDS" ] || { echo "Gateway API CRDs not found in the sigs.k8s.io/gateway-api module" >&2; return 1; }
  export SERIN_CLUSTER_BIN SERIN_HELM SERIN_ISTIO_CRDS SERIN_GATEWAY_API_CRDS
}

peers_flagger() {
  SERIN_FLAGGER="$(go_tool tests/flagger github.com/fluxcd/flagger/cmd/flagger flagger)"
  SERIN_FLAGGER_MODULE="$(module_dir tests/flagger github.com/fluxcd/flagger)"
  [ -f "$SERIN_FLAGGER_MODULE/artifacts/flagger/crd.yaml" ] || { echo "Flagger's CRDs not found in its module ($SERIN_FLAGGER_MODULE)" >&2; return 1; }
  SERIN_HEY="$(go_tool tests/flagger github.com/rakyll/hey hey)"
  export SERIN_FLAGGER SERIN_FLAGGER_MODULE SERIN_HEY
}

# Flux's controllers from the Go modules tests/flux pins (the releases flux2 v2.9.5's
# go.mod names) and its CLI from the flux2 module tests/sources pins, the CRDs from the
# controllers' modules, Istio's charts from the istio.io/istio module tests/sources
# pins:
#   SERIN_FLUX_SOURCE_CONTROLLER, SERIN_FLUX_KUSTOMIZE_CONTROLLER,
#   SERIN_FLUX_HELM_CONTROLLER, SERIN_FLUX_CLI, SERIN_FLUX_CRDS (directories, ':'),
#   SERIN_ISTIO_CHARTS (manifests/charts).
# flux_cli: the flux CLI of the flux2 version tests/sources pins, built once into the
# cache. cmd/flux embeds manifests that flux2's release build generates (they are not
# in the module; only `flux install` and `flux bootstrap` read them, which the lab does
# not use): the build runs in a copy of the module in the cache with an empty
# placeholder there, with flux2's own go.mod and go.sum.
flux_cli() {
  local version bin src
  version="$(cd tests/sources && go list -m -f "{{.Version}}" github.com/fluxcd/flux2/v2)"
  bin="$serin_cache/flux-$version/flux"
  if [ ! -x "$bin" ]; then
    echo "building flux $version from its Go module (cached afterwards)" >&2
    src="$serin_cache/flux-$version/src"
    rm -rf "$src"
    mkdir -p "$(dirname "$src")"
    cp -r "$(module_dir tests/sources github.com/fluxcd/flux2/v2)" "$src"
    chmod -R u+w "$src"
    mkdir -p "$src/cmd/flux/manifests"
    : >"$src/cmd/flux/manifests/placeholder.yaml"
    local start=$SECONDS
    (cd "$src" && go build -trimpath -o "$bin.tmp" ./cmd/flux)
    mv "$bin.tmp" "$bin"
    rm -rf "$src"
    echo "built flux in $((SECONDS - start))s" >&2
  fi
  echo "$bin"
}

peers_flux() {
  local m dirs=()
  SERIN_FLUX_SOURCE_CONTROLLER="$(go_tool tests/flux github.com/fluxcd/source-controller source-controller)"
  SERIN_FLUX_KUSTOMIZE_CONTROLLER="$(go_tool tests/flux github.com/fluxcd/kustomize-controller kustomize-controller)"
  SERIN_FLUX_HELM_CONTROLLER="$(go_tool tests/flux github.com/fluxcd/helm-controller helm-controller)"
  SERIN_FLUX_CLI="$(flux_cli)"
  for m in source-controller kustomize-controller helm-controller; do
    dirs+=("$(module_dir tests/flux "github.com/fluxcd/$m")/config/crd/bases")
    [ -d "${dirs[-1]}" ] || { echo "Flux's CRDs not found in the $m module" >&2; return 1; }
  done
  SERIN_FLUX_CRDS="$(IFS=:; echo "${dirs[*]}")"
  SERIN_ISTIO_CHARTS="$(module_dir tests/sources istio.io/istio)/manifests/charts"
  [ -d "$SERIN_ISTIO_CHARTS/base" ] || { echo "Istio's charts not found in the istio.io/istio module" >&2; return 1; }
  export SERIN_FLUX_SOURCE_CONTROLLER SERIN_FLUX_KUSTOMIZE_CONTROLLER SERIN_FLUX_HELM_CONTROLLER \
    SERIN_FLUX_CLI SERIN_FLUX_CRDS SERIN_ISTIO_CHARTS
}
