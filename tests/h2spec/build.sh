#!/bin/sh
# Build h2spec (HTTP/2 conformance tester) offline from Debian's Go packages:
# the vendored library (../shared/tools/h2spec-src, or /work/shared/tools/h2spec-src)
# with our main.go.
# Prints the binary's path; exit 1 when Go or its packages are missing.
# Usage: sh tests/h2spec/build.sh [OUTDIR]   (default: build/h2spec)
set -eu
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
# the project's shared folder: next to the checkout, or /work/shared (a clone elsewhere)
src=${H2SPEC_SRC:-$root/../shared/tools/h2spec-src}
[ -d "$src" ] || [ -n "${H2SPEC_SRC:-}" ] || src=/work/shared/tools/h2spec-src
out=${1:-$root/build/h2spec}
if [ -x "$out/h2spec" ] && [ "$out/h2spec" -nt "$here/main.go" ]; then echo "$out/h2spec"; exit 0; fi
[ -d "$src" ] || { echo "h2spec: no source at $src" >&2; exit 1; }
pkgs="golang-go golang-golang-x-net-dev golang-github-spf13-cobra-dev golang-github-fatih-color-dev \
golang-github-mattn-go-colorable-dev golang-github-mattn-go-isatty-dev golang-golang-x-sys-dev \
golang-golang-x-text-dev golang-github-spf13-pflag-dev"
missing=$(for p in $pkgs; do dpkg -s "$p" >/dev/null 2>&1 || echo "$p"; done)
if [ -n "$missing" ]; then
  [ "$(id -u)" -eq 0 ] || { echo "h2spec: missing Go packages:" $missing >&2; exit 1; }
  (apt-get install -y --no-install-recommends $missing ||
   { apt-get update && apt-get install -y --no-install-recommends $missing; }) >&2 || exit 1
fi
w=$(mktemp -d)
trap 'rm -rf "$w"' EXIT
mkdir -p "$w/src/github.com/summerwind" "$out"
cp -r "$src" "$w/src/github.com/summerwind/h2spec"
mkdir -p "$w/src/github.com/summerwind/h2spec/cmd/h2spec"
cp "$here/main.go" "$w/src/github.com/summerwind/h2spec/cmd/h2spec/main.go"
(cd "$w/src/github.com/summerwind/h2spec" && GO111MODULE=off GOPATH="$w:/usr/share/gocode" \
  GOCACHE="$w/cache" GOFLAGS=-mod=mod go build -o "$out/h2spec" ./cmd/h2spec) >&2
echo "$out/h2spec"
