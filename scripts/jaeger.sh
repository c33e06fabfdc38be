#!/usr/bin/env bash
# jaeger.sh builds Jaeger, the real trace backend the tracing test exports
# to (its OTLP receivers and query API are the OpenTelemetry Collector's
# and Jaeger's own), once into the user cache directory, and prints its
# path. The version is pinned in test/tools/jaeger/go.mod (a module of its
# own, so the gateway's go.mod never takes Jaeger's dependency tree). Set
# JAEGER to a jaeger binary you already have to skip the build.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
if [[ -n "${JAEGER:-}" ]]; then
	echo "$JAEGER"
	exit 0
fi
version="$(awk '$1 == "github.com/jaegertracing/jaeger" { print $2; exit }' "$root/test/tools/jaeger/go.mod")"
cache="${XDG_CACHE_HOME:-$HOME/.cache}/authgate-jaeger-test/jaeger-${version}"
if [[ ! -x "$cache/jaeger" ]]; then
	echo "jaeger: first run: building github.com/jaegertracing/jaeger@${version} into $cache (a few minutes on 2 cores, once)" >&2
	start=$SECONDS
	mkdir -p "$cache"
	(cd "$root/test/tools/jaeger" && CGO_ENABLED=0 GOFLAGS=-buildvcs=false \
		go build -o "$cache/jaeger.tmp" github.com/jaegertracing/jaeger/cmd/jaeger)
	mv "$cache/jaeger.tmp" "$cache/jaeger"
	echo "jaeger: built in $((SECONDS - start))s" >&2
fi
echo "$cache/jaeger"
