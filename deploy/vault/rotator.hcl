# Vault policy for rotator's vault store (stores/vault), for a KV v2 mount
# "secret" and secrets published under apps/ (policies.yaml: publish.path
# apps/...). Exactly the capabilities the store uses:
#
#   data      read (the latest version and ?version=N), create (the first
#             version, cas=0), update (a new version, cas=current)
#   metadata  read (current_version, the versions map), create and update
#             (custom_metadata)
#   delete    update: soft-delete given versions (undelete restores them),
#             only when a failed run's publish is put back, so that the
#             discarded version is neither readable nor "previous"
#
# Nothing else: no destroy, no delete of the latest version, no list. Narrow or rename the apps/
# prefix (and the mount) to your own; deploy/deploy_test.go checks this file
# against the store's documented policy and runs the store's conformance
# suite with a token holding only this policy.
#
#   vault policy write rotator deploy/vault/rotator.hcl

path "secret/data/apps/*" {
  capabilities = ["create", "read", "update"]
}

path "secret/metadata/apps/*" {
  capabilities = ["create", "read", "update"]
}

path "secret/delete/apps/*" {
  capabilities = ["update"]
}

# The token's own lifecycle: the store renews its token at half its TTL,
# looks it up to tell a dead token from a denied path, and revokes it at
# exit. The default policy grants the same; they are written here so the
# policy also works for a role with token_no_default_policy=true.
path "auth/token/lookup-self" {
  capabilities = ["read"]
}

path "auth/token/renew-self" {
  capabilities = ["update"]
}

path "auth/token/revoke-self" {
  capabilities = ["update"]
}
