# rotator: see README.md.
GO      ?= go
BIN     := bin/rotator
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS := -s -w -X main.version=$(VERSION)
# Packages whose tests also run under the race detector.
RACE_PKGS := ./rotation/... ./schedule/... ./state/... ./internal/seal/... ./notify/...

.PHONY: build demo test test-race test-vault test-aws vet fmt bench clean

build:
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN) ./cmd/rotator

demo: build
	./scripts/demo.sh

# make test: vet, formatting, every test (real Postgres clusters, moto, the
# Vault test server, slacktest), then the race detector on the engine,
# scheduler and state packages.
test: vet fmt
	$(GO) test -count=1 -timeout 20m ./...
	$(GO) test -count=1 -race -timeout 20m $(RACE_PKGS)

test-race:
	$(GO) test -count=1 -race -timeout 20m $(RACE_PKGS)

# The Vault store's tests against a real Vault:
#   VAULT_ADDR=https://vault:8200 VAULT_TOKEN=... make test-vault
test-vault:
	@test -n "$$VAULT_ADDR" -a -n "$$VAULT_TOKEN" || { echo "set VAULT_ADDR and VAULT_TOKEN"; exit 2; }
	$(GO) test -count=1 -v ./stores/vault/...

# The AWS Secrets Manager store's tests against real AWS (default chain):
#   ROTATOR_TEST_AWS_REAL=1 AWS_REGION=eu-central-1 make test-aws
test-aws:
	@test -n "$$ROTATOR_TEST_AWS_REAL" || { echo "set ROTATOR_TEST_AWS_REAL=1 (and AWS_REGION)"; exit 2; }
	$(GO) test -count=1 -v ./stores/awssm/...

vet:
	$(GO) vet ./...

fmt:
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi

bench:
	$(GO) test -run '^$$' -bench . -benchmem ./...

clean:
	rm -rf bin .demo .rotator
