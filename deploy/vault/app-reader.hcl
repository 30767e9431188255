# Vault policy for an application (or its External Secrets store) that reads
# what rotator publishes: read only, on its own path.
#
#   vault policy write app-reader deploy/vault/app-reader.hcl

path "secret/data/apps/db/app" {
  capabilities = ["read"]
}
