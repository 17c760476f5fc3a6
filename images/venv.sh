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
if [ -n "${TORCHENV_CUDA_TOOLKIT:-}" ]; then
    # cuda_toolkit: true. CUDA_HOME is the prefix the CUDA wheels share
    # (nvidia/cu13/: bin/nvcc, include/, nvvm/), with lib64/ holding its
    # libraries and the unversioned names cpp_extension links (-lcudart).
    set -- /opt/venv/lib/python*/site-packages/nvidia/*/bin/nvcc
    if [ ! -x "$1" ]; then
        echo "cuda_toolkit: none of the toolkit wheels ($TORCHENV_CUDA_TOOLKIT) has bin/nvcc" >&2
        exit 1
    fi
    top=${1%/bin/nvcc}
    mkdir -p /opt/venv/cuda/lib64
    for d in "$top"/*; do
        [ "${d##*/}" = lib ] || ln -s "$d" "/opt/venv/cuda/${d##*/}"
    done
    for f in "$top"/lib/*; do
        ln -s "$f" "/opt/venv/cuda/lib64/${f##*/}"
        case ${f##*/} in
            *.so.*) plain=${f##*/}; plain=${plain%%.so.*}.so
                [ -e "/opt/venv/cuda/lib64/$plain" ] || ln -s "$f" "/opt/venv/cuda/lib64/$plain" ;;
        esac
    done
    ln -s ../cuda/bin/nvcc /opt/venv/bin/nvcc
    # The toolkit's size: the files its wheels installed (RECORD).
    mib=$(/opt/venv/bin/python - $TORCHENV_CUDA_TOOLKIT <<'PY'
import importlib.metadata as m, os, sys
total = 0
for name in sys.argv[1:]:
    d = m.distribution(name)
    for f in d.files or []:
        p = d.locate_file(f)
        if os.path.isfile(p) and not os.path.islink(p):
            total += os.path.getsize(p)
print(total >> 20)
PY
)
    echo "==> CUDA toolkit at /opt/venv/cuda (nvcc $(/opt/venv/bin/nvcc --version | sed -n 's/.*release \([0-9.]*\).*/\1/p')): ${mib} MiB of wheels ($TORCHENV_CUDA_TOOLKIT), with the base's g++ and python3-dev" >&2
fi
