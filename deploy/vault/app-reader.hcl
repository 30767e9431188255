# Vault policy for an application (or its External Secrets store) that reads
# what rotator publishes: read only, on its own path.
#
#   vault policy write app-reader deploy/vault/app-reader.hcl

path "secret/data/apps/db/app" {
  capabilities = ["read"]
}

# The versions map: an application (appsecret) finds the previous version
# through it. Metadata holds no secret value.
path "secret/metadata/apps/db/app" {
  capabilities = ["read"]
}
