#!/usr/bin/env bash
# Builds a local stand-in for python:3.12-slim where Docker Hub cannot be reached but Debian's
# package mirror can: Debian bookworm (debootstrap --variant=minbase) plus an already built
# CPython 3.12 copied into /usr/local, imported as python:3.12-slim so that the Dockerfiles and
# scripts/docker_smoke.py run unchanged. It is a stand-in: sizes measured on top of it differ
# from the real base by the base's own size (this one: about 156 MB), not by our layers.
#
#   sudo scripts/standin_base_image.sh [PYTHON_PREFIX] [EXTRA_CA_PEM]
#
# PYTHON_PREFIX: a CPython 3.12 install (default: $(pyenv prefix 3.12.1)); EXTRA_CA_PEM: a CA that
# a TLS-terminating egress proxy needs (pip inside the build must trust it), added to the image's store.
set -euo pipefail

PREFIX=${1:-$(pyenv prefix 3.12.1 2>/dev/null || true)}
EXTRA_CA=${2:-}
[ -x "$PREFIX/bin/python3.12" ] || { echo "no CPython 3.12 at '$PREFIX': pass its prefix as the first argument" >&2; exit 2; }
command -v debootstrap >/dev/null || { echo "debootstrap is needed: apt-get install debootstrap" >&2; exit 2; }

ROOT=$(mktemp -d /tmp/standin-base.XXXXXX)
trap 'rm -rf "$ROOT"' EXIT
echo "[standin] debootstrap bookworm into $ROOT"
debootstrap --variant=minbase bookworm "$ROOT" http://deb.debian.org/debian >/dev/null
cp /etc/resolv.conf "$ROOT/etc/resolv.conf"
# The shared libraries python:3.12-slim carries for the standard library's extension modules.
chroot "$ROOT" apt-get install -y -qq --no-install-recommends ca-certificates libssl3 libsqlite3-0 \
  libffi8 libbz2-1.0 liblzma5 zlib1g libreadline8 libncursesw6 libexpat1 libuuid1 tzdata netbase >/dev/null
if [ -n "$EXTRA_CA" ]; then
  cp "$EXTRA_CA" "$ROOT/usr/local/share/ca-certificates/extra-ca.crt"
  chroot "$ROOT" update-ca-certificates >/dev/null
fi
chroot "$ROOT" apt-get clean
rm -rf "$ROOT"/var/lib/apt/lists/* "$ROOT"/usr/share/doc/* "$ROOT"/usr/share/man/* "$ROOT"/usr/share/locale/* "$ROOT/etc/resolv.conf"

echo "[standin] CPython from $PREFIX into /usr/local"
(cd "$PREFIX" && tar cf - --exclude='lib/python3.12/test' --exclude='lib/python3.12/idlelib' \
  --exclude='lib/python3.12/tkinter' --exclude='lib/python3.12/turtledemo' --exclude='__pycache__' \
  --exclude='*.pth' --exclude='*.a' .) | tar xf - -C "$ROOT/usr/local"
grep -l "^#!$PREFIX/bin/" "$ROOT"/usr/local/bin/* | xargs -r sed -i "1s|^#!$PREFIX/bin/|#!/usr/local/bin/|"
ln -sf python3.12 "$ROOT/usr/local/bin/python"
ln -sf pip3.12 "$ROOT/usr/local/bin/pip"
echo /usr/local/lib > "$ROOT/etc/ld.so.conf.d/local.conf"
chroot "$ROOT" ldconfig
chroot "$ROOT" /usr/local/bin/python -c "import ssl, sqlite3, ctypes, lzma, bz2"

tar -C "$ROOT" -c . | docker import \
  -c 'ENV PATH=/usr/local/bin:/usr/local/sbin:/usr/sbin:/usr/bin:/sbin:/bin' -c 'ENV LANG=C.UTF-8' \
  -c 'ENV PIP_CERT=/etc/ssl/certs/ca-certificates.crt' -c 'ENV SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt' \
  -c 'CMD ["python3"]' - python:3.12-slim >/dev/null
docker image inspect python:3.12-slim --format '[standin] python:3.12-slim (stand-in): {{.Size}} bytes'
