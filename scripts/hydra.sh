#!/usr/bin/env bash
# hydra.sh builds Ory Hydra, the real OpenID Provider the SSO tests sign in
# through, once into the user cache directory, and prints its path. The
# version is pinned in test/tools/go.mod (a module of its own, so the
# gateway's go.mod never takes Hydra's dependency tree). Set HYDRA to a
# hydra binary you already have to skip the build.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
if [[ -n "${HYDRA:-}" ]]; then
	echo "$HYDRA"
	exit 0
fi
version="$(awk '$1 == "github.com/ory/hydra/v2" { print $2; exit }' "$root/test/tools/go.mod")"
cache="${XDG_CACHE_HOME:-$HOME/.cache}/authgate-hydra-test/hydra-${version}"
if [[ ! -x "$cache/hydra" ]]; then
	echo "hydra: first run: building github.com/ory/hydra/v2@${version} into $cache (a few minutes on 2 cores, once)" >&2
	start=$SECONDS
	mkdir -p "$cache"
	# The memory DSN is SQLite in memory: cgo and the sqlite build tag.
	(cd "$root/test/tools" && CGO_ENABLED=1 GOFLAGS=-buildvcs=false \
		go build -tags sqlite,sqlite_omit_load_extension -o "$cache/hydra.tmp" github.com/ory/hydra/v2)
	mv "$cache/hydra.tmp" "$cache/hydra"
	echo "hydra: built in $((SECONDS - start))s" >&2
fi
echo "$cache/hydra"
