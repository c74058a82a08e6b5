#!/usr/bin/env bash
# Local stand-ins for the public images Dockerfile and docker-compose.yml name, built from Debian's
# packages (no image registry is reachable where this runs, Debian's archive is):
#   python:3.11-slim         Debian's python3.11 and pip (pip installs system-wide, as in the real one)
#   redis:7.2-alpine         Debian's redis-server, run as the redis user in /data
#   prom/prometheus:v2.55.1  Debian's prometheus (and wget, which the healthcheck calls)
# Each is a root file system made by mmdebstrap, then `podman import`ed under the name the files use,
# so that both files stay as a user with Docker runs them. The versions are Debian bookworm's
# (Python 3.11.2, Redis 7.0, Prometheus 2.42), not the tags': the tags are only names here.
#
# The tarballs are kept in $SESSIONIZER_PODMAN_CACHE (default /var/tmp/sessionizer-podman), keyed by
# a digest of their recipe: an image is made again only when its recipe changes.
# Usage: deploy/podman/base-images.sh [--podman 'podman --runtime runc']
set -euo pipefail

PODMAN="${PODMAN:-podman --runtime runc}"
[ "${1:-}" = "--podman" ] && PODMAN="$2"
CACHE="${SESSIONIZER_PODMAN_CACHE:-/var/tmp/sessionizer-podman}"
SUITE=bookworm
# Debian's packages from where this machine's apt takes them (with its security and updates
# suites), when its sources name the suite; else mmdebstrap's default (Debian's mirror, the same
# suites). DEBIAN_MIRROR: a mirror URL or a sources file of your own.
MIRROR="${DEBIAN_MIRROR:-}"
if [ -z "$MIRROR" ]; then
    for sources in /etc/apt/sources.list.d/debian.sources /etc/apt/sources.list; do
        if [ -s "$sources" ] && grep -Eq "^[^#]*\b$SUITE\b" "$sources"; then MIRROR="$sources"; break; fi
    done
fi
mkdir -p "$CACHE"

# name|packages|hook script run in the root file system|podman import --change lines (';'-separated)
RECIPES=(
"docker.io/library/python:3.11-slim|python3,python3-pip,python3-venv,ca-certificates|\
rm -f usr/lib/python3.11/EXTERNALLY-MANAGED; ln -s /usr/bin/python3 usr/local/bin/python; \
ln -s /usr/bin/pip3 usr/local/bin/pip|\
ENV LANG=C.UTF-8;CMD [\"python3\"]"
"docker.io/library/redis:7.2-alpine|redis-server,redis-tools|\
mkdir -p data && chroot . chown redis:redis /data|\
WORKDIR /data;USER redis;VOLUME /data;EXPOSE 6379;CMD [\"redis-server\"]"
"docker.io/prom/prometheus:v2.55.1|prometheus,wget|\
mkdir -p prometheus etc/prometheus && chroot . chown prometheus:prometheus /prometheus|\
WORKDIR /prometheus;USER prometheus;VOLUME /prometheus;EXPOSE 9090;ENTRYPOINT [\"/usr/bin/prometheus\"];\
CMD [\"--config.file=/etc/prometheus/prometheus.yml\", \"--storage.tsdb.path=/prometheus\"]"
)

# No recommended packages, no documentation: a runtime only (nor the 220 MB of time zone data of
# Prometheus' classic web page: the check reads its HTTP API).
OPTIONS=(
    --aptopt='APT::Install-Recommends "false"'
    --dpkgopt='path-exclude=/usr/share/doc/*' --dpkgopt='path-exclude=/usr/share/man/*'
    --dpkgopt='path-exclude=/usr/share/locale/*' --dpkgopt='path-exclude=/usr/share/info/*'
    --dpkgopt='path-exclude=/usr/share/javascript/moment-timezone/*'
)

build_one() {
    local name="$1" packages="$2" hook="$3" changes="$4"
    local key tar start
    key=$(printf '%s\n' "$SUITE" "$MIRROR" "${OPTIONS[@]}" "$name" "$packages" "$hook" "$changes" | sha256sum | cut -c1-16)
    tar="$CACHE/$(basename "${name%%:*}")-$key.tar"
    start=$(date +%s)
    if [ "$($PODMAN image inspect --format '{{index .Labels "org.sessionizer.recipe"}}' "$name" 2>/dev/null)" = "$key" ]; then
        echo "$name: up to date (recipe $key)"
        return
    fi
    if [ ! -s "$tar" ]; then
        mmdebstrap --quiet --format=tar --variant=minbase --include="$packages" "${OPTIONS[@]}" \
            --customize-hook="cd \"\$1\" && $hook" \
            --customize-hook='rm -rf "$1"/var/lib/apt/lists/* "$1"/var/cache/apt/*' \
            "$SUITE" "$tar.part" ${MIRROR:+"$MIRROR"} </dev/null
        mv "$tar.part" "$tar"
        find "$CACHE" -maxdepth 1 -name "$(basename "${name%%:*}")-*.tar" ! -path "$tar" -delete  # older recipes
    fi
    local args=() change old
    IFS=';' read -ra parts <<<"$changes"
    for change in "${parts[@]}"; do args+=(--change "$change"); done
    old=$($PODMAN image inspect --format '{{.Id}}' "$name" 2>/dev/null || true)
    $PODMAN import --quiet "${args[@]}" --change "LABEL org.sessionizer.recipe=$key" "$tar" "$name" >/dev/null
    [ -z "$old" ] || $PODMAN rmi "$old" >/dev/null 2>&1 || true  # the older stand-in, unless still in use
    echo "$name: built in $(( $(date +%s) - start )) s ($(du -m "$tar" | cut -f1) MB rootfs)"
}

command -v mmdebstrap >/dev/null || { echo "need mmdebstrap (apt-get install mmdebstrap)" >&2; exit 1; }
# The three are made side by side: most of the time goes to downloads and unpacking, not the CPU.
pids=()
for recipe in "${RECIPES[@]}"; do
    IFS='|' read -r name packages hook changes <<<"$recipe"
    build_one "$name" "$packages" "$hook" "$changes" &
    pids+=($!)
done
status=0
for pid in "${pids[@]}"; do wait "$pid" || status=1; done
exit $status
