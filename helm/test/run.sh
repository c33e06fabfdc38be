#!/usr/bin/env bash
# run.sh runs the Helm chart tests (the `make helm-test` target).
# The first run builds helm v3.22.0 through the Go module proxy and caches it
# under the user cache directory; set HELM to use a helm binary you already have.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"
go vet ./...
exec go test -race -count=1 -timeout 20m ./... "$@"
