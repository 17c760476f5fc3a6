#!/bin/sh
# The venv layer (/opt/venv), run by `cargo xtask build` as root in a
# container of the base image with no network. /mnt (read-only) holds the
# locked wheels (wheels/), requirements.txt (name==version --hash=sha256:…)
# and uv; /opt is a folder of the build machine, which torchenv archives as
# the layer afterwards (sorted, owner root, every mtime SOURCE_DATE_EPOCH).
set -eu
# Whatever happens, the build (not root) can read and remove what was made.
trap 'chown -R "$TORCHENV_OWNER" /opt' EXIT
export HOME=/tmp PYTHONHASHSEED=0 UV_CACHE_DIR=/opt/.uv-cache UV_NO_PROGRESS=1 \
    UV_PYTHON_DOWNLOADS=never
# Lines starting with "==> " are phases, kept in the build log.
echo "==> python3 -m venv /opt/venv" >&2
# The image's python, with pip (from Debian's bundled wheel, offline).
python3 -m venv /opt/venv
echo "==> uv pip install ($(grep -c -- --hash /mnt/requirements.txt) wheels)" >&2
# Hard links from uv's cache (same folder tree), then the cache goes.
/mnt/uv pip install --no-config --offline --no-index --find-links /mnt/wheels \
    --no-deps --require-hashes --link-mode hardlink \
    --python /opt/venv/bin/python -r /mnt/requirements.txt
rm -rf /opt/.uv-cache
# uv's own note of when it unpacked each wheel is the one thing that differs
# between two installs of the same wheels: it goes, with its RECORD line.
find /opt/venv -path '*.dist-info/uv_cache.json' -delete
sed -i '/\.dist-info\/uv_cache\.json,/d' /opt/venv/lib/python*/site-packages/*.dist-info/RECORD
echo "==> byte code" >&2
# Byte code once, hash-checked: no source mtime in it, the same bytes on
# every build. A file that does not compile stays source only, as with pip.
/opt/venv/bin/python -m compileall -q -q -f -j 0 --invalidation-mode checked-hash \
    /opt/venv/lib >/dev/null || echo "some files have no byte code (they do not compile)" >&2
