#!/usr/bin/env bash
# Builds etcd, kube-apiserver, kube-scheduler, kube-controller-manager and kwok
# from the Go module proxy into a git-ignored cache. Idempotent: a binary whose
# --version already matches is kept. See docs/controlplane.md for measured times.
set -euo pipefail

K8S_VERSION=${K8S_VERSION:-v1.36.3}
ETCD_VERSION=${ETCD_VERSION:-v3.6.16}
KWOK_VERSION=${KWOK_VERSION:-v0.8.0}

ROOT=$(cd "$(dirname "$0")/.." && pwd)
CACHE=${OME_CONTROLPLANE_CACHE:-$ROOT/.cache/controlplane}
OUT=$CACHE/bin
WORK=$CACHE/build
export GOTOOLCHAIN=local CGO_ENABLED=0 GOFLAGS=-trimpath

command -v go >/dev/null || { echo "build-controlplane: Go toolchain not found (need Go >= 1.26)" >&2; exit 1; }
mkdir -p "$OUT" "$WORK"

has_version() {  # has_version BINARY EXPECTED_SUBSTRING
  [ -x "$OUT/$1" ] && "$OUT/$1" --version 2>/dev/null | grep -qF -- "$2"
}

build_k8s() {
  local d=$WORK/k8s-tools
  rm -rf "$d"; mkdir -p "$d"; cd "$d"
  go mod init local.invalid/k8s-tools >/dev/null 2>&1
  local stg=v0.${K8S_VERSION#v1.}
  local gomod
  gomod=$(go mod download -json "k8s.io/kubernetes@$K8S_VERSION" | python3 -c 'import json,sys;print(json.load(sys.stdin)["GoMod"])')
  # Every staging module the tag replaces with ./staging/... gets its published v0.x version.
  for m in $(grep -oE '^\s*k8s\.io/[a-z0-9-]+ => \./staging/' "$gomod" | awk '{print $1}' | sort -u); do
    go mod edit -replace="$m=$m@$stg"
  done
  go get -tool "k8s.io/kubernetes/cmd/kube-apiserver@$K8S_VERSION" \
               "k8s.io/kubernetes/cmd/kube-scheduler@$K8S_VERSION" \
               "k8s.io/kubernetes/cmd/kube-controller-manager@$K8S_VERSION"
  go mod tidy
  local minor=${K8S_VERSION#v1.}; minor=${minor%%.*}
  local ldf="-s -w"
  for p in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    ldf+=" -X $p.gitVersion=$K8S_VERSION -X $p.gitMajor=1 -X $p.gitMinor=$minor -X $p.gitTreeState=clean"
  done
  go build -p 2 -ldflags "$ldf" -o "$OUT/" \
    k8s.io/kubernetes/cmd/kube-apiserver k8s.io/kubernetes/cmd/kube-scheduler k8s.io/kubernetes/cmd/kube-controller-manager
}

build_etcd() {
  local d=$WORK/etcd-tools
  rm -rf "$d"; mkdir -p "$d"; cd "$d"
  go mod init local.invalid/etcd-tools >/dev/null 2>&1
  # Recorded as a tool so that 'go mod tidy' keeps it (the module has no code of its own).
  go get -tool "go.etcd.io/etcd/server/v3@$ETCD_VERSION"
  go mod tidy
  go build -ldflags "-s -w" -o "$OUT/etcd" go.etcd.io/etcd/server/v3
}

build_kwok() {
  GOBIN=$OUT go install -ldflags "-s -w -X sigs.k8s.io/kwok/pkg/consts.Version=$KWOK_VERSION" "sigs.k8s.io/kwok/cmd/kwok@$KWOK_VERSION"
  # The default stages ship in the module; copy them next to the binary so the launcher needs no Go.
  local src
  src=$(go env GOMODCACHE)/sigs.k8s.io/kwok@$KWOK_VERSION/kustomize/stage
  rm -rf "$OUT/kwok-stages"; mkdir -p "$OUT/kwok-stages"
  cp -r "$src"/. "$OUT/kwok-stages/"; chmod -R u+w "$OUT/kwok-stages"
}

start=$(date +%s)
has_version etcd "${ETCD_VERSION#v}" || { echo "building etcd $ETCD_VERSION"; build_etcd; }
has_version kwok "$KWOK_VERSION" && [ -d "$OUT/kwok-stages" ] || { echo "building kwok $KWOK_VERSION"; build_kwok; }
if ! { has_version kube-apiserver "$K8S_VERSION" && has_version kube-scheduler "$K8S_VERSION" \
       && has_version kube-controller-manager "$K8S_VERSION"; }; then
  echo "building kubernetes $K8S_VERSION"; build_k8s
fi
for b in etcd kube-apiserver kube-scheduler kube-controller-manager kwok; do
  printf '%-24s %s\n' "$b" "$("$OUT/$b" --version 2>&1 | head -n 1)"
done
echo "control plane binaries in $OUT ($(( $(date +%s) - start ))s)"
