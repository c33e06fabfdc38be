#!/usr/bin/env bash
# static-check.sh builds authgate exactly as the Dockerfile does and fails
# unless the result is a static Linux executable with no libc dependency,
# i.e. it will run on gcr.io/distroless/static (which has no libc).
#
# Usage: scripts/static-check.sh            (from anywhere in the repository)
#   VERSION=1.2.3 scripts/static-check.sh   stamp and verify a version
#   GOARCH=arm64  scripts/static-check.sh   check another architecture
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
version="${VERSION:-static-check}"
goarch="${GOARCH:-$(go env GOARCH)}"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
bin="$work/authgate"

fail() { echo "static-check: FAIL: $*" >&2; exit 1; }

echo "static-check: building linux/$goarch (CGO_ENABLED=0 -trimpath) ..."
# Keep these flags identical to the build stage of the Dockerfile.
(cd "$root" && CGO_ENABLED=0 GOOS=linux GOARCH="$goarch" GOFLAGS=-buildvcs=false \
	go build -trimpath -ldflags "-s -w -X main.version=${version}" -o "$bin" .)

# 1. The build settings recorded in the binary say cgo was off.
buildinfo="$(go version -m "$bin")"
grep -Eq '^[[:space:]]+build[[:space:]]+CGO_ENABLED=0$' <<<"$buildinfo" \
	|| fail "build info does not record CGO_ENABLED=0:"$'\n'"$buildinfo"
grep -Eq '^[[:space:]]+build[[:space:]]+-trimpath=true$' <<<"$buildinfo" \
	|| fail "build info does not record -trimpath"

# 2. The ELF file has no interpreter, no dynamic section and no NEEDED
#    libraries. Checked with Go's debug/elf so that no binutils are required.
mkdir -p "$work/elfcheck"
cat >"$work/elfcheck/go.mod" <<'GOMOD'
module elfcheck

go 1.26
GOMOD
cat >"$work/elfcheck/main.go" <<'GOSRC'
// Command elfcheck exits non-zero unless its argument is a static ELF executable.
package main

import (
	"debug/elf"
	"fmt"
	"os"
)

func main() {
	f, err := elf.Open(os.Args[1])
	if err != nil {
		fmt.Fprintln(os.Stderr, "elfcheck:", err)
		os.Exit(1)
	}
	defer f.Close()
	bad := false
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP || p.Type == elf.PT_DYNAMIC {
			fmt.Fprintf(os.Stderr, "elfcheck: program header %v present (dynamically linked)\n", p.Type)
			bad = true
		}
	}
	libs, err := f.ImportedLibraries()
	if err != nil {
		fmt.Fprintln(os.Stderr, "elfcheck:", err)
		os.Exit(1)
	}
	if len(libs) > 0 {
		fmt.Fprintf(os.Stderr, "elfcheck: needs shared libraries %v\n", libs)
		bad = true
	}
	if f.Type != elf.ET_EXEC {
		fmt.Fprintf(os.Stderr, "elfcheck: ELF type %v, want ET_EXEC\n", f.Type)
		bad = true
	}
	if bad {
		os.Exit(1)
	}
	fmt.Printf("elfcheck: %s: static %v executable, no shared libraries\n", os.Args[1], f.Machine)
}
GOSRC
(cd "$work/elfcheck" && GOFLAGS=-mod=mod CGO_ENABLED=0 go run . "$bin") || fail "binary is not static"

# 3. Cross-check with binutils / file(1) when the host has them.
if command -v readelf >/dev/null 2>&1; then
	if readelf -d "$bin" 2>/dev/null | grep -q 'NEEDED'; then
		fail "readelf lists NEEDED shared libraries"
	fi
	if readelf -l "$bin" 2>/dev/null | grep -q 'INTERP'; then
		fail "readelf lists a program interpreter"
	fi
	echo "static-check: readelf: no NEEDED entries, no INTERP"
fi
if command -v file >/dev/null 2>&1; then
	desc="$(file -b "$bin")"
	grep -q 'statically linked' <<<"$desc" || fail "file(1) says: $desc"
	echo "static-check: file: $desc"
fi

# 4. The version is stamped (a misspelt -X target is silently ignored by the
#    linker) and the binary starts. Only possible when it runs on this host.
if [[ "$(go env GOOS)" == linux && "$goarch" == "$(go env GOARCH)" ]]; then
	out="$("$bin" version 2>&1)" || fail "'authgate version' exited non-zero: $out"
	grep -qF -- "$version" <<<"$out" || fail "'authgate version' printed \"$out\", want it to contain \"$version\""
	echo "static-check: authgate version: $out"
fi

echo "static-check: OK"
