#!/usr/bin/env bash
# Installs the cleartrail binary for the GitHub Action (action.yml).
#
# A release's archive for this runner's platform is downloaded with the
# release's SHA256SUMS, its digest checked, and unpacked into a cache
# folder; a platform with no archive in the release (or a checkout that is
# not a release) is built from the action's own source with
# `cargo install --locked`. A digest that does not match is never
# installed and never falls back: it means the download is not what was
# released. (SHA256SUMS comes with the release, so this catches a damaged
# or swapped download, not a release replaced as a whole; `version:
# source` builds the pinned commit itself.)
#
# Environment (all optional but the version):
#   CLEARTRAIL_VERSION      the release, e.g. 0.1.0 ("source": build from source)
#   CLEARTRAIL_RELEASE_URL  where the release's files are: an https:// base URL
#                           or a local folder [default: the action repository's
#                           release v<version> on $GITHUB_SERVER_URL]
#   CLEARTRAIL_INSTALL_DIR  where to install [default: $RUNNER_TOOL_CACHE or
#                           ~/.cache, then cleartrail/<version>/<target>]
#   CLEARTRAIL_SOURCE_DIR   the source for the cargo fallback [default: the
#                           checkout this script is in]
#   CLEARTRAIL_PLATFORM     <os>-<arch> instead of this machine's (tests)
#   CARGO                   the cargo program [default: cargo]
# Prints the installed binary's path; in Actions, also adds its folder to
# $GITHUB_PATH and sets the step output `path`.
set -euo pipefail

fail() {
  echo "::error title=cleartrail install::$*" >&2
  exit 1
}

version="${CLEARTRAIL_VERSION:?CLEARTRAIL_VERSION is not set}"
version="${version#v}"
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
source_dir="${CLEARTRAIL_SOURCE_DIR:-$(cd "$here/../.." && pwd)}"

# The action's repository and ref. GITHUB_ACTION_REPOSITORY and
# GITHUB_ACTION_REF are empty in a composite action's steps
# (actions/runner#2473); the runner keeps actions in
# .../_actions/<owner>/<repo>/<ref>, which says the same.
action_repo="${GITHUB_ACTION_REPOSITORY:-}"
action_ref="${GITHUB_ACTION_REF:-}"
case "$source_dir" in
  */_actions/*/*/*)
    rest="${source_dir##*/_actions/}"
    owner="${rest%%/*}"
    rest="${rest#*/}"
    repo="${rest%%/*}"
    rest="${rest#*/}"
    action_repo="${action_repo:-$owner/$repo}"
    action_ref="${action_ref:-${rest%%/*}}"
    ;;
esac
action_repo="${action_repo:-cleartrail/cleartrail}"

platform="${CLEARTRAIL_PLATFORM:-}"
if [ -z "$platform" ]; then
  case "$(uname -s)" in
    Linux) os=linux ;;
    Darwin) os=macos ;;
    *) os="$(uname -s | tr '[:upper:]' '[:lower:]')" ;;
  esac
  case "$(uname -m)" in
    x86_64 | amd64) arch=x86_64 ;;
    aarch64 | arm64) arch=aarch64 ;;
    *) arch="$(uname -m)" ;;
  esac
  platform="$os-$arch"
fi
case "$platform" in
  linux-x86_64) target=x86_64-unknown-linux-gnu ;;
  linux-aarch64) target=aarch64-unknown-linux-gnu ;;
  macos-aarch64) target=aarch64-apple-darwin ;;
  *) target="" ;;
esac

cache_root="${RUNNER_TOOL_CACHE:-${HOME}/.cache}"
dir="${CLEARTRAIL_INSTALL_DIR:-$cache_root/cleartrail/$version/${target:-source-$platform}}"
bin="$dir/bin/cleartrail"

announce() {
  echo "$bin"
  if [ -n "${GITHUB_PATH:-}" ]; then echo "$dir/bin" >>"$GITHUB_PATH"; fi
  if [ -n "${GITHUB_OUTPUT:-}" ]; then echo "path=$bin" >>"$GITHUB_OUTPUT"; fi
}

digest() {
  if command -v sha256sum >/dev/null; then
    sha256sum "$1" | awk '{ print $1 }'
  else
    shasum -a 256 "$1" | awk '{ print $1 }'
  fi
}

# Already installed (a cache hit): the binary must be the one installed
# (its digest was recorded then) and still run. A build from source is
# never reused: the same version may be another commit.
if [ "$version" != "source" ] && [ -x "$bin" ] && [ -f "$bin.sha256" ] &&
  [ "$(digest "$bin")" = "$(cat "$bin.sha256")" ] && "$bin" --version >/dev/null 2>&1; then
  echo "cleartrail $version already installed in $dir" >&2
  announce
  exit 0
fi

from_source() {
  echo "$1: building cleartrail from $source_dir with cargo install --locked" >&2
  [ -f "$source_dir/Cargo.toml" ] || fail "no Cargo.toml in $source_dir to build from"
  # The action's own commit, which `cleartrail init` pins workflows to.
  if printf '%s' "$action_ref" | grep -Eq '^[0-9a-f]{40}$'; then
    export CLEARTRAIL_ACTION_SHA="$action_ref"
  fi
  "${CARGO:-cargo}" install --locked --force --path "$source_dir" --root "$dir" ||
    fail "cargo install --locked --path $source_dir failed"
  [ -x "$bin" ] || fail "cargo install left no $bin"
  "$bin" --version >/dev/null || fail "the built $bin does not run"
  announce
  exit 0
}

if [ "$version" = "source" ]; then
  from_source "version source"
fi
if [ -z "$target" ]; then
  from_source "no release binary for $platform"
fi

archive="cleartrail-$version-$target.tar.gz"
server="${GITHUB_SERVER_URL:-https://github.com}"
base="${CLEARTRAIL_RELEASE_URL:-$server/$action_repo/releases/download/v$version}"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT

fetch() {
  case "$base" in
    http://* | https://*)
      curl --proto '=https,http' --proto-redir '=https' --fail --silent --show-error --location --retry 3 \
        --output "$tmp/$1" "$base/$1"
      ;;
    *) cp "$base/$1" "$tmp/$1" ;;
  esac
}

fetch SHA256SUMS 2>"$tmp/err" || fail "cannot read SHA256SUMS of release $version at $base: $(cat "$tmp/err")"
expected="$(awk -v f="$archive" '$2 == f || $2 == "*"f { print $1 }' "$tmp/SHA256SUMS")"
if [ -z "$expected" ]; then
  from_source "release $version has no $archive"
fi
fetch "$archive" 2>"$tmp/err" || fail "cannot download $archive from $base: $(cat "$tmp/err")"
actual="$(digest "$tmp/$archive")"
if [ "$actual" != "$expected" ]; then
  fail "checksum mismatch for $archive: SHA256SUMS says $expected, the download is $actual; refusing to install it"
fi
mkdir -p "$tmp/unpacked"
tar -xzf "$tmp/$archive" -C "$tmp/unpacked" || fail "$archive is not a gzip tar archive"
[ -f "$tmp/unpacked/cleartrail" ] || fail "$archive holds no cleartrail binary"
mkdir -p "$dir/bin"
install -m 0755 "$tmp/unpacked/cleartrail" "$bin"
digest "$bin" >"$bin.sha256"
"$bin" --version >/dev/null || fail "the installed $bin does not run on $platform"
echo "installed cleartrail $version ($target) in $dir" >&2
announce
