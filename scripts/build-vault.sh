#!/usr/bin/env bash
# Builds the `vault` binary the tests run (internal/vaultdev) from the Go
# module proxy, for machines without HashiCorp's packages. Real deployments
# install Vault from HashiCorp's packages instead (see README).
#
# github.com/hashicorp/vault@v1.21.4 cannot be `go install`ed: its go.mod
# replaces api, sdk and api/auth/* with local directories that are separate
# modules, not part of the zip. So: copy the module to a writable directory,
# drop those replaces, require the nested modules at exactly the versions the
# release's go.mod names, adapt the three call sites where the published
# sdk v0.21.0 differs from the release tree's own sdk, and build.
#
# The build uses its own GOMODCACHE and GOCACHE (~8 GB), removed afterwards;
# only the binary stays, in $VAULT_CACHE_DIR (default
# ${XDG_CACHE_HOME:-$HOME/.cache}/rotator/vault-1.21.4/vault). Idempotent: exits
# at once when the binary exists. About 13 minutes on 2 cores, 4.6 GB memory.
set -euo pipefail

VAULT_VERSION=v1.21.4
cache_root="${XDG_CACHE_HOME:-$HOME/.cache}/rotator"
out_dir="${VAULT_CACHE_DIR:-$cache_root/vault-${VAULT_VERSION#v}}"
out="$out_dir/vault"

if [ -x "$out" ]; then
  echo "vault: $out already built"
  exit 0
fi

GO="${GO:-go}"
mkdir -p "$out_dir"
work="$(mktemp -d "$out_dir/build.XXXXXX")"
# Module cache files are read-only; make them removable before rm.
cleanup() { chmod -R u+w "$work" 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT

export GOMODCACHE="$work/mod" GOCACHE="$work/cache" GOTOOLCHAIN=local
export GOFLAGS="${GOFLAGS:-} -mod=mod"
export CGO_ENABLED=0

echo "vault: fetching github.com/hashicorp/vault@$VAULT_VERSION from the module proxy"
src_mod="$(cd "$work" && "$GO" mod download -json "github.com/hashicorp/vault@$VAULT_VERSION" |
  sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')"
[ -d "$src_mod" ] || { echo "vault: module download failed" >&2; exit 1; }
src="$work/src"
cp -R "$src_mod" "$src"
chmod -R u+w "$src"
cd "$src"

for m in api api/auth/approle api/auth/kubernetes api/auth/userpass sdk; do
  "$GO" mod edit -dropreplace "github.com/hashicorp/vault/$m"
done
"$GO" mod edit \
  -require=github.com/hashicorp/vault/api@v1.22.0 \
  -require=github.com/hashicorp/vault/sdk@v0.21.0 \
  -require=github.com/hashicorp/vault/api/auth/approle@v0.1.0 \
  -require=github.com/hashicorp/vault/api/auth/userpass@v0.1.0 \
  -require=github.com/hashicorp/vault/api/auth/kubernetes@v0.10.0

# The published sdk v0.21.0: framework.Backend.ActivationFunc takes a third
# (string) argument, and keysutil.LockManager.RestorePolicy returns only an
# error. None of these is on the KV, token, AppRole, Kubernetes-auth or seal
# paths the tests use.
patch_file() { # file, perl expression, text that must appear afterwards
  perl -0pi -e "$2" "$1"
  grep -qF "$3" "$1" || { echo "vault: patching $1 failed (source changed?)" >&2; exit 1; }
}
patch_file vault/identity_store.go \
  's/ActivationFunc: iStore\.activateDeduplication,/ActivationFunc: func(ctx context.Context, req *logical.Request, _ string) error { return iStore.activateDeduplication(ctx, req) },/' \
  'req *logical.Request, _ string) error { return iStore.activateDeduplication'
patch_file vault/logical_system_activation_flags.go \
  's/b\.idStoreBackend\.ActivationFunc\(ctx, nil\)/b.idStoreBackend.ActivationFunc(ctx, nil, "")/' \
  'ActivationFunc(ctx, nil, "")'
patch_file builtin/logical/transit/path_restore.go \
  's/restoredKeyName, err := b\.lm\.RestorePolicy\(ctx, req\.Storage, keyName, backupB64, force\)/restoredKeyName := keyName\n\terr := b.lm.RestorePolicy(ctx, req.Storage, keyName, backupB64, force)/' \
  'restoredKeyName := keyName'

echo "vault: building (go $("$GO" env GOVERSION), GOFLAGS=$GOFLAGS); this takes a while"
"$GO" build -trimpath -ldflags='-s -w' -o "$work/vault" .
"$work/vault" version
mv "$work/vault" "$out"
echo "vault: built $out"
