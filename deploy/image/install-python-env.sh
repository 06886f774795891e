#!/bin/sh
# Builds the image's Python environment; the Dockerfile runs exactly this, and
# tests/install/test_image.py runs it into a clean venv on the host, so the two cannot differ.
#
#   install-python-env.sh VENV SOURCE_DIR
#
# Dependencies come only from the hash-pinned lock (pip refuses anything unpinned or altered);
# the package itself is built from SOURCE_DIR without dependencies. pycriu is not on PyPI: it
# comes from Debian's criu package, and only its directory is exposed to the venv, so Debian's
# own protobuf stays out (pycriu's pb2 modules need the lock's protobuf < 7). The bytecode is
# compiled once, hash-based and unchecked: the image's root filesystem is read-only (nothing could
# be cached at run time) and its files never change, while the timestamps a .pyc would be checked
# against do not survive the image's layers exactly.
set -eu
venv=$1
src=$2
pycriu=${PYCRIU_DIR:-/usr/lib/python3/dist-packages/pycriu}

python3 -m venv "$venv"
"$venv/bin/pip" install --no-cache-dir --disable-pip-version-check --no-compile --require-hashes \
    --no-deps \
    -r "$src/deploy/image/requirements.lock"
wheels=$(mktemp -d)
"$venv/bin/pip" wheel --no-cache-dir --disable-pip-version-check --no-deps -w "$wheels" "$src"
"$venv/bin/pip" install --no-cache-dir --disable-pip-version-check --no-compile --no-deps --no-index \
    "$wheels"/*.whl
rm -rf "$wheels"

site=$("$venv/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
mkdir -p "$venv/debian-pycriu"
ln -sfn "$pycriu" "$venv/debian-pycriu/pycriu"
echo "$venv/debian-pycriu" > "$site/debian-pycriu.pth"
"$venv/bin/python" -m compileall -q -f -j 0 --invalidation-mode unchecked-hash "$site"

"$venv/bin/pip" check
"$venv/bin/python" -c 'import forensic_checkpoint.cli.main, pycriu.images.pagemap_pb2'
