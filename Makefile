# rotator: see README.md.
GO      ?= go
BIN     := bin/rotator
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS := -s -w -X main.version=$(VERSION)
# Packages whose tests also run under the race detector.
RACE_PKGS := ./rotation/... ./schedule/... ./state/... ./internal/seal/... ./notify/...

.PHONY: build demo screenshots test test-race test-vault test-aws vault vet fmt fuzz-short bench bench-rotate bench-scale clean

build:
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN) ./cmd/rotator

demo: build
	./scripts/demo.sh

# The README's screenshots of the status page, taken by its browser test
# (headless Chromium against a daemon over real Postgres).
screenshots:
	ROTATOR_UPDATE_SCREENSHOTS=1 $(GO) test -count=1 -run '^TestSeeIt$$' ./cmd/rotator

# make test: vet, formatting, a short run of each fuzz target, every test
# (real Postgres clusters, moto, a real vault server -dev, slacktest), the
# proof package last and on its own (its live-client proof measures logins,
# which a machine busy with the other packages slows), the deploy module's
# tests, then the race detector on the engine, scheduler and state packages
# (without the failure-path matrix, which the plain run has already covered
# and which the race detector slows several times).
# Parallel tests run TEST_PARALLEL at a time (go test's default is the
# number of cores, 2 here): most of them wait on real servers, deadlines
# and grace periods rather than compute (the rotation package, mostly the
# failure-path matrix: 172 s at 2, 109 s at 4, the same CPU time). The
# proof's live-client tests are not parallel tests, so they still run
# alone. TEST_PARALLEL=2 gives go test's default back on a slower machine.
TEST_PARALLEL ?= 4
test: vet fmt fuzz-short
	$(GO) test -count=1 -timeout 20m -parallel $(TEST_PARALLEL) $$($(GO) list ./... | grep -v '/proof$$')
	$(GO) test -count=1 -timeout 20m -parallel $(TEST_PARALLEL) ./proof
	cd deploy && $(GO) test -count=1 -timeout 20m ./...
	$(GO) test -count=1 -race -timeout 20m -skip 'TestFailurePathMatrix' $(RACE_PKGS)

test-race:
	$(GO) test -count=1 -race -timeout 20m $(RACE_PKGS)

# The vault binary the tests run when neither VAULT_BIN nor `vault` on PATH
# gives one: Vault 1.21.4 built from the Go module proxy into
# ~/.cache/rotator/vault-1.21.4/vault (about 15 minutes once; a no-op after).
vault:
	GO=$(GO) ./scripts/build-vault.sh

# The Vault store's tests against another Vault:
#   VAULT_ADDR=https://vault:8200 VAULT_TOKEN=... make test-vault
test-vault:
	@test -n "$$VAULT_ADDR" -a -n "$$VAULT_TOKEN" || { echo "set VAULT_ADDR and VAULT_TOKEN"; exit 2; }
	$(GO) test -count=1 -v ./stores/vault/...

# The AWS Secrets Manager store's tests against real AWS (default chain):
#   ROTATOR_TEST_AWS_REAL=1 AWS_REGION=eu-central-1 make test-aws
test-aws:
	@test -n "$$ROTATOR_TEST_AWS_REAL" || { echo "set ROTATOR_TEST_AWS_REAL=1 (and AWS_REGION)"; exit 2; }
	$(GO) test -count=1 -v ./stores/awssm/...

# The test build of the CLI (fault injection, tag rotatortest) is vetted too.
vet:
	$(GO) vet ./...
	$(GO) vet -tags rotatortest ./cmd/rotator
	cd deploy && $(GO) vet ./...

# Each fuzz target for a short while (make test runs this); one line per
# target. A failing input is saved under the package's testdata/fuzz/.
fuzz-short:
	$(GO) test -run '^$$' -fuzz '^FuzzLoad$$' -fuzztime 20s ./policy
	$(GO) test -run '^$$' -fuzz '^FuzzRedact$$' -fuzztime 20s ./internal/dsn

fmt:
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi

# make bench: the Go benchmarks, then bench/rotate.sh (the engine against
# the floor: 1,000 blue/green rotations each way, 8 in flight) and
# bench/scale.sh (run --due with nothing due at 10, 10,000 and 100,000
# secrets; the daemon at 100,000, then again with a reload that reuses
# nothing, a reload of a file with a mistake, and the status page), whose
# numbers bench/compare.py compares
# with bench/baseline-rotate.txt and bench/baseline-scale.txt: a
# regression of more than 20 % is flagged and fails the target (after
# both scripts ran).
bench:
	$(GO) test -run '^$$' -bench . -skip '^Benchmark(Rotate|AgainstAWSRotation)$$' -benchmem ./...
	GO=$(GO) ./bench/rotate.sh; r=$$?; GO=$(GO) VARIANTS="top mistake page" ./bench/scale.sh; s=$$?; exit $$((r | s))

# The engine against the floor alone.
bench-rotate:
	GO=$(GO) ./bench/rotate.sh

# The scale numbers alone (about 5 minutes).
bench-scale:
	GO=$(GO) ./bench/scale.sh

clean:
	rm -rf bin .demo .rotator
