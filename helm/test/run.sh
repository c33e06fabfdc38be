#!/usr/bin/env bash
# run.sh runs the Helm chart tests (the `make helm-test` target).
#
# The tests need helm v3.22.0. Set HELM to a helm binary you already have;
# otherwise the first run builds helm from source through the Go module proxy
# into the user cache directory (a few minutes on a small machine, printed
# below) and later runs reuse it. The tests run through scripts/testsummary,
# which ends with the skipped tests grouped by reason.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
cd "$here"

helm_module="helm.sh/helm/v3/cmd/helm@v3.22.0"
if [[ -z "${HELM:-}" ]]; then
	cache="${XDG_CACHE_HOME:-$HOME/.cache}/authgate-helm-test/helm-v3.22.0"
	if [[ ! -x "$cache/helm" ]]; then
		echo "helm-test: first run: building $helm_module from source into $cache"
		echo "helm-test: this takes a few minutes (about 3 to 6 on 2 cores) and happens once; set HELM=/path/to/helm to skip it"
		start=$SECONDS
		mkdir -p "$cache"
		# Outside any module, so the install ignores this module's go.mod.
		(cd "${TMPDIR:-/tmp}" && CGO_ENABLED=0 GOFLAGS=-buildvcs=false GOBIN="$cache" go install "$helm_module")
		echo "helm-test: built $("$cache/helm" version --short) in $((SECONDS - start))s"
	fi
	export HELM="$cache/helm"
fi
echo "helm-test: using $("$HELM" version --short) ($HELM)"

go vet ./...
summary="$(mktemp -d)"
trap 'rm -rf "$summary"' EXIT
(cd "$root" && go build -o "$summary/testsummary" ./scripts/testsummary)
"$summary/testsummary" -race -count=1 -timeout 20m ./... "$@"
