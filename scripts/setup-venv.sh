#!/usr/bin/env bash
# Idempotent project environment: .venv with the package and all its extras (operator, export),
# its dev tools, the dev harness (dev/: dev cluster, fake kubelet, demo; never in the product's
# wheel), and Debian's pycriu. The analyzer does not need pycriu (it decodes CRIU images with
# modules generated from third_party/criu at build time); the tests cross-check it against
# pycriu. pycriu is not on PyPI; Debian's `criu` package ships it as pure Python, so we install
# the package (if missing) and expose only the pycriu directory to the venv through a .pth file,
# keeping Debian's own protobuf out of the venv (the venv pins protobuf < 7 from PyPI).
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv}
PY=${PYTHON:-python3}

pycriu_dir=/usr/lib/python3/dist-packages
if [ ! -d "$pycriu_dir/pycriu" ]; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
        echo "setup: installing Debian's criu package for pycriu" >&2
        apt-get update -qq >/dev/null
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq criu >/dev/null
    else
        echo "setup: pycriu missing; install Debian's 'criu' package (apt-get install criu)" >&2
        exit 1
    fi
fi

[ -x "$VENV/bin/python" ] || "$PY" -m venv "$VENV"
stamp="$VENV/.installed-$(cat pyproject.toml dev/pyproject.toml | sha256sum | cut -c1-16)"
if [ ! -f "$stamp" ]; then
    "$VENV/bin/pip" install -q --disable-pip-version-check -e '.[operator,export,dev]' -e ./dev
    rm -f "$VENV"/.installed-*
    touch "$stamp"
fi
# The editable install's build hook generated the CRIU image modules; regenerate them when the
# vendored protos or the generator changed since (they are not in git).
pb2_dir=operator/src/forensic_checkpoint/analysis/format/criu_proto
if [ ! -f "$pb2_dir/core_pb2.py" ] || [ -n "$(find third_party/criu tools/criu_protos.py -newer "$pb2_dir/core_pb2.py" -print -quit)" ]; then
    "$VENV/bin/python" tools/criu_protos.py
fi

site=$("$VENV/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
mkdir -p "$VENV/debian-pycriu"
ln -sfn "$pycriu_dir/pycriu" "$VENV/debian-pycriu/pycriu"
echo "$(cd "$VENV" && pwd)/debian-pycriu" > "$site/debian-pycriu.pth"
"$VENV/bin/python" -c 'import pycriu.images.pagemap_pb2, google.protobuf as p; assert int(p.__version__.split(".")[0]) < 7, p.__version__'
