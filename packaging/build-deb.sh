#!/usr/bin/env bash
# Builds the Debian package and lints it (docs/PACKAGING.md). Run from anywhere, as any user:
#   bash packaging/build-deb.sh                  # -> target/debian/lastfm-monitor_<version>_<arch>.deb
#   bash packaging/build-deb.sh --no-build       # package target/release/lastfm-monitor as it is
#   bash packaging/build-deb.sh --update-config  # rewrite packaging/config.toml from config.toml
# Needs cargo-deb (`cargo install cargo-deb --locked`) and lintian (`apt-get install lintian`).
#
#  1. packaging/config.toml, the package's /etc/lastfm-monitor/config.toml, must be exactly the
#     repository's config.toml with the API key read from the unit's credential (see gen_config).
#     A change to config.toml that the transformation no longer fits fails here, so the two
#     cannot drift apart silently.
#  2. cargo build --release --locked, then cargo deb --no-build (the same release binary).
#  3. lintian: no error, and no warning that packaging/lintian-overrides does not justify.
# The path of the .deb is the last line of the output (for systemd/nspawn-check.sh).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

readonly PACKAGED=packaging/config.toml

# config.toml -> packaging/config.toml. Each expression must match exactly once (checked below).
readonly HEADER_OLD='^#   LASTFM_API_KEY=\.\.\. lastfm-monitor --config\.file config\.toml --config\.check$'
readonly KEY_OLD='^api_key = { env = "LASTFM_API_KEY" } .*$'
readonly HINT_OLD='^  *# under the shipped systemd unit use { credential = "api_key" }$'
gen_config() {
    local pattern n
    for pattern in "$HEADER_OLD" "$KEY_OLD" "$HINT_OLD"; do
        n=$(grep -c -- "$pattern" config.toml || true)
        if [[ $n != 1 ]]; then
            echo "config.toml: expected exactly one line matching /$pattern/, found $n;" \
                "update gen_config in packaging/build-deb.sh" >&2
            return 1
        fi
    done
    sed -e "1a\\
#\\
# Installed by the lastfm-monitor package as /etc/lastfm-monitor/config.toml (a conffile: local\\
# edits survive upgrades). Generated from the repository's config.toml by packaging/build-deb.sh;\\
# the one difference: the API key comes from the unit's LoadCredential=api_key:/etc/lastfm-monitor/api_key." \
        -e "s|$HEADER_OLD|#   CREDENTIALS_DIRECTORY=/etc/lastfm-monitor lastfm-monitor --config.file /etc/lastfm-monitor/config.toml --config.check|" \
        -e "s|$KEY_OLD|api_key = { credential = \"api_key\" }             # /etc/lastfm-monitor/api_key, through the unit's LoadCredential=|" \
        -e "/$HINT_OLD/d" \
        config.toml
}

if [[ ${1:-} == --update-config ]]; then
    gen_config >"$PACKAGED.tmp" && mv "$PACKAGED.tmp" "$PACKAGED"
    echo "wrote $PACKAGED"
    exit 0
fi

step() { printf -- '-- %s\n' "$*"; }
t0=$SECONDS

step "packaging/config.toml is config.toml with the key from LoadCredential"
if ! diff -u "$PACKAGED" <(gen_config); then
    echo "$PACKAGED is stale: run bash packaging/build-deb.sh --update-config" >&2
    exit 1
fi

command -v cargo-deb >/dev/null || {
    echo "cargo-deb not found: cargo install cargo-deb --locked" >&2
    exit 2
}
command -v lintian >/dev/null || {
    echo "lintian not found: apt-get install lintian" >&2
    exit 2
}

if [[ ${1:-} == --no-build ]]; then
    [[ -x target/release/lastfm-monitor ]] || {
        echo "--no-build: target/release/lastfm-monitor does not exist" >&2
        exit 1
    }
    step "--no-build: packaging target/release/lastfm-monitor of $(date -ur target/release/lastfm-monitor +%FT%TZ)"
else
    step "cargo build --release --locked"
    t=$SECONDS
    cargo build --release --locked --quiet
    echo "release build: $((SECONDS - t)) s"
fi

step "cargo deb --no-build"
t=$SECONDS
# cargo-deb prints the path of the .deb on its last line.
deb=$(cargo deb --no-build --locked --quiet | tail -1)
[[ -f $deb ]] || {
    echo "cargo deb did not report a .deb (got: $deb)" >&2
    exit 1
}
echo "cargo deb: $((SECONDS - t)) s, $deb ($(du -h "$deb" | cut -f1))"

step "lintian"
t=$SECONDS
# --fail-on error,warning: an override (packaging/lintian-overrides, shipped as
# /usr/share/lintian/overrides/lastfm-monitor, each with its reason) is the only way a warning or
# error passes. Info tags are shown as well (docs/PACKAGING.md explains each).
# lintian says "running with root privileges is not recommended!" as root; it is harmless here.
if ! lintian --fail-on error,warning --display-info "$deb"; then
    echo "lintian: errors or unjustified warnings (see above and docs/PACKAGING.md)" >&2
    exit 1
fi
# The overridden tags, for the log (--show-overrides would make them count for --fail-on).
lintian --show-overrides "$deb" 2>/dev/null | grep '^O:' || true
echo "lintian: $((SECONDS - t)) s, clean (no error, no warning outside packaging/lintian-overrides)"
echo "build-deb.sh: OK in $((SECONDS - t0)) s"
echo "$deb"
