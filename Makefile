# authgate — see README.md.
GO        ?= go
VERSION   ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS   := -s -w -X main.version=$(VERSION)
DEMO_SECRET := demo-secret-for-make-run-only-0123456789

.PHONY: build run test test-short fuzz lint bench bench-quick image static-check helm-test

build:
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags "$(LDFLAGS)" -o bin/authgate .

# Run the gateway on config.example.yaml in front of the built-in demo upstream.
run:
	AUTHGATE_JWT_SECRET=$(DEMO_SECRET) $(GO) run . serve --config config.example.yaml --demo-upstream 127.0.0.1:8081

# The test command CI runs (.ci/run): vet, formatting, the race-enabled suite
# and a short run of every fuzz target.
test: lint
	$(GO) test -race -count=1 ./...
	$(MAKE) fuzz FUZZTIME=10s

FUZZTIME ?= 30s
fuzz:
	$(GO) test -run='^$$' -fuzz='^FuzzCanonicalDecide$$' -fuzztime=$(FUZZTIME) ./policy/

lint:
	@test -z "$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go'))" || { gofmt -l .; echo "gofmt: files above need formatting"; exit 1; }
	$(GO) vet ./...
