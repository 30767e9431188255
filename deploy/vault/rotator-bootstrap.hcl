# Vault policy for the External Secrets store that delivers rotator's own
# credentials (state DSN, state key, admin DSNs) to the rotator namespace.
# People write them; rotator never reads them from Vault itself.
#
#   vault policy write rotator-bootstrap deploy/vault/rotator-bootstrap.hcl

path "secret/data/platform/rotator/*" {
  capabilities = ["read"]
}
