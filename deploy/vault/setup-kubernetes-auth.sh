#!/bin/sh
# Vault side of Kubernetes auth for rotator and for the External Secrets
# stores in deploy/kubernetes/examples. Run with a Vault token allowed to
# manage auth methods and policies (VAULT_ADDR, VAULT_TOKEN set).
#
# Vault reviews the pods' tokens with the TokenReview API: its reviewer
# ServiceAccount needs system:auth-delegator
# (deploy/kubernetes/examples/vault/auth-delegator.yaml).
set -eu
here=$(dirname "$0")

vault auth enable kubernetes 2>/dev/null || true
# Inside the cluster Vault finds the API server and its CA itself; from
# outside, add kubernetes_ca_cert=@ca.crt and token_reviewer_jwt=@reviewer.jwt.
vault write auth/kubernetes/config kubernetes_host="https://kubernetes.default.svc:443"

vault policy write rotator "$here/rotator.hcl"
vault policy write app-reader "$here/app-reader.hcl"
vault policy write rotator-bootstrap "$here/rotator-bootstrap.hcl"

# rotator's pods present a projected token with audience "vault" (the
# manifests mount it at /var/run/secrets/vault/token). Short token TTLs:
# the store renews and logs in again by itself.
vault write auth/kubernetes/role/rotator \
  bound_service_account_names=rotator \
  bound_service_account_namespaces=rotator,rotator-staging,rotator-dev \
  audience=vault \
  token_policies=rotator \
  token_no_default_policy=true \
  token_ttl=15m token_max_ttl=1h

vault write auth/kubernetes/role/app-reader \
  bound_service_account_names=app \
  bound_service_account_namespaces=app \
  token_policies=app-reader \
  token_ttl=15m token_max_ttl=1h

vault write auth/kubernetes/role/rotator-bootstrap \
  bound_service_account_names=rotator-bootstrap \
  bound_service_account_namespaces=rotator \
  token_policies=rotator-bootstrap \
  token_ttl=15m token_max_ttl=1h
