#!/bin/sh
# Install the Debian packages the build, tests and benchmark need.
# Idempotent: asks dpkg first and calls apt-get only for what is missing.
# Usage: mk/deps.sh build|test|bench|deb
set -eu

BUILD="gcc make pkg-config libevent-dev libssl-dev node-llhttp libyaml-dev libpcre2-dev libnghttp2-dev
zlib1g-dev libhiredis-dev"
TEST="libcmocka-dev python3 python3-pytest python3-websockets python3-h2 iperf3 curl openssl nghttp2-client
clang libclang-rt-14-dev libcap2-bin python3-prometheus-client prometheus chromium wget strace
systemd man-db logrotate redis-server iproute2 util-linux"
BENCH="wrk tinyproxy microsocks dante-server nginx libnginx-mod-stream socat haproxy stunnel4 iperf3 openssh-server
openssh-client procps"
DEB="debhelper dpkg-dev fakeroot lintian"

case "${1:-build}" in
    build) want="$BUILD" ;;
    test) want="$BUILD $TEST" ;;
    bench) want="$BUILD $TEST $BENCH" ;;
    deb) want="$BUILD $DEB" ;;
    *) echo "usage: $0 build|test|bench|deb" >&2; exit 2 ;;
esac

missing=""
for p in $want; do
    if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
        missing="$missing $p"
    fi
done
[ -z "$missing" ] && exit 0

echo "deps: installing:$missing"
if [ "$(id -u)" -ne 0 ]; then
    echo "deps: missing packages and not root; run as root or install:$missing" >&2
    exit 1
fi
export DEBIAN_FRONTEND=noninteractive
# Daemons in the bench set must not start on install.
if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d
    chmod +x /usr/sbin/policy-rc.d
    trap 'rm -f /usr/sbin/policy-rc.d' EXIT
fi
apt-get update -qq || true
# shellcheck disable=SC2086
apt-get install -y -qq --no-install-recommends $missing
