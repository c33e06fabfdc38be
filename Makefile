# authgate — see README.md.
GO        ?= go
VERSION   ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
REVISION  ?= $(shell git rev-parse HEAD 2>/dev/null || echo unknown)
IMAGE     ?= ghcr.io/authgate/authgate
# The chart's appVersion: the image tag the chart pulls by default.
APP_VERSION := $(shell sed -n 's/^appVersion:[[:space:]]*"\{0,1\}\([^"]*\)"\{0,1\}[[:space:]]*$$/\1/p' helm/authgate/Chart.yaml)
LDFLAGS   := -s -w -X main.version=$(VERSION) -X main.revision=$(REVISION)
DEMO_SECRET := demo-secret-for-make-run-only-0123456789

.PHONY: build run test test-short allocs fuzz lint bench bench-quick image static-check helm-test release rollout-long hydra-demo

build:
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags "$(LDFLAGS)" -o bin/authgate .

# Run the gateway on config.example.yaml in front of the built-in demo upstream.
run:
	AUTHGATE_JWT_SECRET=$(DEMO_SECRET) $(GO) run . serve --config config.example.yaml --demo-upstream 127.0.0.1:8081

# The test command CI runs (.ci/run): formatting and vet, the race-enabled
# suite, the pinned allocation counts, a short run of every fuzz target,
# the static-binary check and the Helm chart tests. scripts/testsummary
# prints what go test prints, then the skipped tests grouped by reason.
# scripts/hydra.sh builds the OpenID Provider of the SSO tests once
# (cached), scripts/jaeger.sh the trace backend of the tracing test.
test: lint
	scripts/hydra.sh >/dev/null
	scripts/jaeger.sh >/dev/null
	$(GO) run ./scripts/testsummary -race -count=1 -timeout 30m ./...
	$(MAKE) allocs
	$(MAKE) fuzz FUZZTIME=20000x
	$(MAKE) static-check
	$(MAKE) helm-test

# The pinned allocation counts per request: the race detector changes them,
# so this runs without it.
allocs:
	$(GO) test -count=1 -run 'TestAllocationsPinned|TestTracingOffAllocatesNothing' ./proxy/

# Every native fuzz target, as package:target.
FUZZ_TARGETS := ./policy/:FuzzCanonicalDecide ./policy/:FuzzPolicyLoad ./authn/:FuzzBearerToken \
	./authn/apikey/:FuzzAPIKeysParse ./authn/users/:FuzzUsersParse ./authn/jwks/:FuzzJWKSParse \
	./internal/yamlx/:FuzzYAMLDecode ./internal/clientip/:FuzzClientIP ./authn/jose/:FuzzStrictDecode \
	./authn/:FuzzClaimText ./proxy/:FuzzGRPCTimeout ./authn/jwks/:FuzzClaimsDecode
FUZZTIME ?= 30s
fuzz:
	@set -e; for t in $(FUZZ_TARGETS); do \
		pkg=$${t%%:*}; name=$${t##*:}; \
		echo "fuzz $$name ($$pkg, $(FUZZTIME))"; \
		$(GO) test -run='^$$' -fuzz="^$$name$$" -fuzztime=$(FUZZTIME) $$pkg; \
	done

lint:
	@test -z "$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go'))" || { gofmt -l .; echo "gofmt: files above need formatting"; exit 1; }
	$(GO) vet ./...

# Build the container image (needs a Docker engine with BuildKit), tagged
# with the chart's appVersion, which the chart pulls by default, and with the
# commit's version (git describe) for traceability.
image:
	docker build --build-arg VERSION=$(VERSION) --build-arg REVISION=$(REVISION) \
		--build-arg CREATED=$$(date -u +%Y-%m-%dT%H:%M:%SZ) \
		-t $(IMAGE):$(APP_VERSION) -t $(IMAGE):$(VERSION) .

# Release artifacts in dist/: static binaries for linux and darwin (amd64,
# arm64) built like `build`, SHA256SUMS and a CycloneDX SBOM per binary.
release:
	VERSION=$(VERSION) LDFLAGS="$(LDFLAGS)" scripts/release.sh

# Build exactly like the Dockerfile and prove the binary is static (no libc).
static-check:
	VERSION=$(VERSION) scripts/static-check.sh

# Lint, render and strictly decode the Helm chart with the real helm binary.
helm-test:
	helm/test/run.sh

# The benchmark harness: every authgate mode against a bare and a tuned
# httputil.ReverseProxy and nginx in one run, with CPU per request of each
# process (see bench/RESULTS.md; it takes about thirteen minutes). bench-quick
# is a run under a minute; go test ./bench/ runs every mode once (--smoke).
bench: build
	$(GO) run ./bench --authgate bin/authgate

bench-quick: build
	$(GO) run ./bench --quick --authgate bin/authgate

# The long form of the rollout harness (test/rollout): ten stops per
# topology with the production shutdown settings; README "Gateway shutdown
# contract" quotes its figures. About ten minutes.
rollout-long:
	AUTHGATE_ROLLOUT_LONG=1 $(GO) test -count=1 -timeout 90m -v ./test/rollout

# A local OpenID Provider (Ory Hydra, in memory) with a demo login app and
# the gateway in front of the demo upstream, signed in through it: see
# README "SSO with your identity provider".
hydra-demo:
	AUTHGATE_JWT_SECRET=$(DEMO_SECRET) $(GO) run ./test/e2e/hydrademo --hydra "$$(scripts/hydra.sh)"
