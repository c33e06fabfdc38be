#!/usr/bin/env bash
# release.sh builds the release artifacts of authgate into dist/ (the
# `make release` target):
#
#   authgate_<version>_<os>_<arch>.tar.gz   static binary + LICENSE, README.md, CHANGELOG.md
#   authgate_<version>_<os>_<arch>.cdx.json CycloneDX SBOM of that binary's module graph
#   SHA256SUMS                              SHA-256 of every file above
#
# for linux and darwin on amd64 and arm64. The binaries are built like
# `make build` and the Dockerfile: CGO_ENABLED=0, -trimpath, the version
# stamped through -ldflags. Archives are reproducible: files are sorted, owned
# by 0:0 and dated at the commit time (SOURCE_DATE_EPOCH), and gzip stores no
# name or time.
#
# The SBOM comes from cyclonedx-gomod (CycloneDX 1.6 JSON), pinned below and
# installed through the Go module proxy; it reads the module graph with the same
# GOOS/GOARCH/CGO_ENABLED as the build, so each target gets its own SBOM.
#
# Environment:
#   VERSION       version to stamp (default: git describe --tags --always --dirty)
#   LDFLAGS       linker flags (default: -s -w -X main.version=$VERSION)
#   PLATFORMS     space-separated os/arch list (default: the four above)
#   DIST          output directory (default: dist)
#   ALLOW_DIRTY=1 allow a release from a work tree with uncommitted changes
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

cyclonedx="github.com/CycloneDX/cyclonedx-gomod/cmd/cyclonedx-gomod@v1.10.0"
version="${VERSION:-$(git describe --tags --always --dirty 2>/dev/null || echo dev)}"
ldflags="${LDFLAGS:--s -w -X main.version=${version}}"
platforms="${PLATFORMS:-linux/amd64 linux/arm64 darwin/amd64 darwin/arm64}"
dist="${DIST:-dist}"

fail() { echo "release: $*" >&2; exit 1; }
step() { echo "release: $*"; }

# A release is built from a committed tree: a dirty one would stamp a version
# that no commit has.
if [[ "$version" == *-dirty && "${ALLOW_DIRTY:-}" != 1 ]]; then
	fail "the work tree has uncommitted changes (version $version); commit them or set ALLOW_DIRTY=1"
fi

# The image and the chart follow the chart's appVersion; a release tag must
# agree with it, or `helm install` would pull an image that was never built.
app_version="$(sed -n 's/^appVersion:[[:space:]]*"\{0,1\}\([^"]*\)"\{0,1\}[[:space:]]*$/\1/p' helm/authgate/Chart.yaml)"
[[ -n "$app_version" ]] || fail "helm/authgate/Chart.yaml has no appVersion"
if [[ "$version" =~ ^v[0-9]+\.[0-9]+\.[0-9]+(-[0-9A-Za-z.-]+)?$ && "$version" != "v$app_version" ]]; then
	fail "release tag $version does not match the chart's appVersion $app_version (helm/authgate/Chart.yaml)"
fi

epoch="${SOURCE_DATE_EPOCH:-$(git log -1 --format=%ct 2>/dev/null || date +%s)}"
export SOURCE_DATE_EPOCH="$epoch"

mkdir -p "$dist"
dist="$(cd "$dist" && pwd)"
[[ "$dist" != / && "$dist" != "$root" ]] || fail "refusing to empty DIST=$dist (the repository or /)"
rm -rf "${dist:?}"/*
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

# The SBOM tool runs on this host, so it is built for the host, not the target.
step "install ${cyclonedx} (host tool)"
(cd "$work" && GOOS= GOARCH= CGO_ENABLED=0 GOFLAGS=-buildvcs=false GOBIN="$work/bin" go install "$cyclonedx") \
	|| fail "cannot install ${cyclonedx} (it needs the Go module proxy)"
# cyclonedx-gomod reads the main module's version from git through go-git,
# which cannot open a linked work tree (.git is a file there): it runs on a
# local clone of the commit being released.
git clone --quiet --no-checkout "$root" "$work/src"
git -C "$work/src" checkout --quiet --detach "$(git rev-parse HEAD)"

step "version $version (chart appVersion $app_version), platforms: $platforms"
for p in $platforms; do
	os="${p%/*}"
	arch="${p#*/}"
	name="authgate_${version}_${os}_${arch}"
	stage="$work/$name"
	mkdir -p "$stage"

	step "build $os/$arch"
	CGO_ENABLED=0 GOOS="$os" GOARCH="$arch" \
		go build -trimpath -ldflags "$ldflags" -o "$stage/authgate" .
	cp LICENSE README.md CHANGELOG.md "$stage/"

	# The build settings recorded in the binary must say what we asked for.
	info="$(go version -m "$stage/authgate")"
	for want in "CGO_ENABLED=0" "GOOS=$os" "GOARCH=$arch" "-trimpath=true"; do
		grep -Eq "^[[:space:]]+build[[:space:]]+${want}\$" <<<"$info" \
			|| fail "$name: build info lacks $want"
	done

	tar --sort=name --mtime="@$epoch" --owner=0 --group=0 --numeric-owner \
		--mode='u+rwX,go+rX,go-w' -C "$work" -cf - "$name" | gzip -9n >"$dist/$name.tar.gz"

	step "sbom $os/$arch"
	CGO_ENABLED=0 GOOS="$os" GOARCH="$arch" \
		"$work/bin/cyclonedx-gomod" app -json -licenses -std -output-version 1.6 \
		-output "$dist/$name.cdx.json" -main . "$work/src" \
		|| fail "$name: SBOM generation failed"
done

(cd "$dist" && sha256sum -- *.tar.gz *.cdx.json >SHA256SUMS)
step "artifacts in $dist/:"
(cd "$dist" && ls -l && sha256sum -c --quiet SHA256SUMS && echo "release: SHA256SUMS verified")
