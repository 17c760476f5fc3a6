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
# sshd_config as this base's OpenSSH reads it: the key exchanges it lacks
# left out (bullseye's 8.4 has no sntrup761x25519), the option name before
# 8.5 for PubkeyAcceptedAlgorithms; then checked with a throwaway host key
# (in /tmp, not in the layer), so an sshd that would refuse it fails here.
have_kex=$(ssh -Q kex)
kex=
for k in $(sed -n 's/^KexAlgorithms //p' /mnt/sshd_config | tr , ' '); do
    if printf '%s\n' "$have_kex" | grep -qxF "$k"; then kex="${kex:+$kex,}$k"; fi
done
sed "s/^KexAlgorithms .*/KexAlgorithms $kex/" /mnt/sshd_config > /tmp/sshd_config
ssh-keygen -q -t ed25519 -N '' -f /tmp/host_key
if ! /usr/sbin/sshd -t -f /tmp/sshd_config -h /tmp/host_key 2>/dev/null; then
    sed -i 's/^PubkeyAcceptedAlgorithms /PubkeyAcceptedKeyTypes /' /tmp/sshd_config
fi
/usr/sbin/sshd -t -f /tmp/sshd_config -h /tmp/host_key
install -m 0644 /tmp/sshd_config /etc/ssh/sshd_config
install -m 0755 /mnt/entrypoint.sh /usr/local/bin/torchenv-entrypoint
find /var/log -type f -delete
# No setuid/setgid file stays in the image (su, mount, passwd, …): nothing
# run as `dev` can become root, also without no-new-privileges.
# (/opt/venv is the venv layer's, left alone: no wheel installs setuid files.)
find / -xdev -path /opt/venv -prune -o -type f -perm /6000 -exec chmod ug-s {} +
find / -xdev -path /opt/venv -prune -o -newer /tmp/.started \
    -exec touch -h -d "@$SOURCE_DATE_EPOCH" {} +
