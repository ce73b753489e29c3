#!/usr/bin/env bash
# Installs Kamailio 5.6 and SIPp from Debian, and builds the one module Debian
# does not package (http_async_client) from Debian's source of the installed
# Kamailio version, so its compile flags match the packaged core. Idempotent:
# each step is skipped when its result is already there.
set -euo pipefail

PACKAGES=(kamailio kamailio-extra-modules kamailio-json-modules
          sip-tester libevent-dev libcurl4-openssl-dev dpkg-dev)
MODDIR=/usr/lib/$(dpkg-architecture -qDEB_HOST_MULTIARCH 2>/dev/null || gcc -print-multiarch)/kamailio/modules
MODULE=http_async_client
SRC_LIST=/etc/apt/sources.list.d/sipdata-deb-src.sources
BUILD=${KAMAILIO_BUILD_DIR:-/var/cache/sipdata/kamailio-src}

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

missing=()
for p in "${PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
    echo "installing ${missing[*]}"
    as_root apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

version=$(dpkg-query -W -f='${Version}' kamailio)
stamp="$MODDIR/.$MODULE-$version"
if [ -f "$MODDIR/$MODULE.so" ] && [ -f "$stamp" ]; then
    exit 0
fi

echo "building $MODULE for kamailio $version"
if ! grep -qs deb-src /etc/apt/sources.list /etc/apt/sources.list.d/*; then
    as_root tee "$SRC_LIST" >/dev/null <<SOURCES
Types: deb-src
URIs: http://deb.debian.org/debian
Suites: bookworm bookworm-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
SOURCES
    as_root apt-get update -qq
fi
as_root mkdir -p "$BUILD"
as_root chown "$(id -u):$(id -g)" "$BUILD"
cd "$BUILD"
rm -rf src
apt-get source -qq --download-only "kamailio=$version" 2>/dev/null
dpkg-source -x --no-check kamailio_*.dsc src >/dev/null
cd src
# The same configuration flags as debian/rules, so the module's compile-flag
# fingerprint matches the packaged core's and it loads. The shared-mutex flag is
# otherwise guessed from the openssl found at build time (none in a minimal image):
# it is taken from the core itself.
shared_mutex=0
kamailio -V | grep -q TLS_PTHREAD_MUTEX_SHARED && shared_mutex=1
make cfg quiet=silent prefix=/usr cfg_target=/etc/kamailio/ FLAVOUR=kamailio \
    LIBSSL_SET_MUTEX_SHARED=$shared_mutex \
    LIBDIR="lib/$(dpkg-architecture -qDEB_HOST_MULTIARCH)" \
    CC_EXTRA_OPTS="$(dpkg-buildflags --get CPPFLAGS) $(dpkg-buildflags --get CFLAGS) -DVERSION_NODATE" \
    LD_EXTRA_OPTS="$(dpkg-buildflags --get LDFLAGS)" >/dev/null
make -C "src/modules/$MODULE" quiet=silent >/dev/null 2>&1
as_root install -m 0644 "src/modules/$MODULE/$MODULE.so" "$MODDIR/$MODULE.so"
as_root rm -f "$MODDIR/.$MODULE-"*
as_root touch "$stamp"
echo "installed $MODDIR/$MODULE.so"
