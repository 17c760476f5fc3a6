# Stage image `torchenv/venv:<hash of base + wheel set>`, built by
# `cargo xtask build` with no network: the locked wheels (sent in the build
# context, checked against their sha256 by pip) installed into /opt/venv.
# The final image copies /opt/venv out of it; the wheelhouse never gets there.
ARG BASE_IMAGE
FROM ${BASE_IMAGE}
COPY wheels/ /tmp/wheelhouse/
RUN python3 -m venv /opt/venv \
 && /opt/venv/bin/pip install --no-index --no-deps --require-hashes --no-cache-dir \
        --disable-pip-version-check -r /tmp/wheelhouse/requirements.txt \
 && rm -rf /tmp/wheelhouse /root/.cache
