#!/bin/sh
# The system layer, run by `cargo xtask build` as root in a container of
# the venv stage image with no network; /mnt (read-only) holds this folder.
# The engine commits what it changes as one layer. Every path it changes
# gets the time SOURCE_DATE_EPOCH, so the layer depends only on its inputs.
set -eu
touch /tmp/.started   # /tmp is a tmpfs: not part of the layer
# Non-root user for SSH and Jupyter; no password at all ('*': key-only SSH).
useradd --uid 1000 --user-group --create-home --shell /bin/bash --password '*' dev
mkdir -p /workspace /run/sshd /etc/ssh/authorized_keys
chown dev:dev /workspace
# Key-only sshd; host keys are made per container at start, never here.
install -m 0644 /mnt/sshd_config /etc/ssh/sshd_config
install -m 0755 /mnt/entrypoint.sh /usr/local/bin/torchenv-entrypoint
find /var/log -type f -delete
# No setuid/setgid file stays in the image (su, mount, passwd, …): nothing
# run as `dev` can become root, also without no-new-privileges.
# (/opt/venv is the venv layer's, left alone: no wheel installs setuid files.)
find / -xdev -path /opt/venv -prune -o -type f -perm /6000 -exec chmod ug-s {} +
find / -xdev -path /opt/venv -prune -o -newer /tmp/.started \
    -exec touch -h -d "@$SOURCE_DATE_EPOCH" {} +
