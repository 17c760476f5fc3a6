#!/bin/bash
# torchenv-entrypoint: the first process under tini in every torchenv
# container. It runs as root only long enough to
#   1. map user `dev` to the host user's UID/GID (TORCHENV_UID/TORCHENV_GID),
#      so files written into bind mounts belong to that user on the host;
#   2. generate this container's own SSH host keys (none are in the image);
#   3. install the user's public key (TORCHENV_SSH_PUBKEY, or the file
#      /run/torchenv/authorized_keys) and start sshd (key-only, no root);
#   4. start JupyterLab as `dev` on 0.0.0.0:8888 in /workspace with the token
#      read from /run/torchenv/jupyter_token (a read-only bind of a 0600 file;
#      the token never appears in the container's config or the image),
# or, when a command is given, run that command as `dev` instead (no sshd,
# no Jupyter: `docker run IMAGE python …` just runs python).
#
# Switches (set by `cargo xtask up`): TORCHENV_SSH=0|1 / TORCHENV_JUPYTER=0|1
# (default: 1 without a command, 0 with one).
set -euo pipefail

if [ "$#" -gt 0 ]; then
    : "${TORCHENV_SSH:=0}" "${TORCHENV_JUPYTER:=0}"
fi

# Started as a non-root user (`docker run --user`): nothing to map or start.
if [ "$(id -u)" != 0 ]; then
    [ "$#" -gt 0 ] || set -- sleep infinity
    exec "$@"
fi

log() { echo "torchenv-entrypoint: $*" >&2; }

user=dev
home=/home/$user
uid=${TORCHENV_UID:-$(id -u "$user")}
gid=${TORCHENV_GID:-$(id -g "$user")}

# A host user of root maps to nothing: `dev` must never be uid 0, or sshd's
# "no root login" would refuse it and the container user would be root.
if [ "$uid" = 0 ] || [ "$gid" = 0 ]; then
    log "host user is root; keeping $user at $(id -u "$user"):$(id -g "$user")"
    uid=$(id -u "$user")
    gid=$(id -g "$user")
fi

old_uid=$(id -u "$user")
old_gid=$(id -g "$user")
if [ "$gid" != "$old_gid" ]; then
    groupmod -o -g "$gid" "$user"
fi
if [ "$uid" != "$old_uid" ]; then
    # -o: the host UID may already name an image user (e.g. 1000 vs 1001).
    usermod -o -u "$uid" "$user" 2>/dev/null || usermod -o -u "$uid" "$user"
fi
if [ "$uid" != "$old_uid" ] || [ "$gid" != "$old_gid" ]; then
    # The home only; -xdev keeps out of anything mounted below it.
    find "$home" -xdev \( -uid "$old_uid" -o -gid "$old_gid" \) \
        -exec chown -h "$uid:$gid" {} +
fi

# The environment of the container (PATH with /opt/venv, spec `env:`) for
# SSH sessions, which sshd starts with a clean environment.
{
    env | grep -E '^(PATH|LANG|LC_ALL|VIRTUAL_ENV|NVIDIA_[A-Z_]*|CUDA_[A-Z_]*|TORCHENV_ENV)=' || true
    for name in ${TORCHENV_USER_ENV:-}; do
        printf '%s=%s\n' "$name" "${!name-}"
    done
} > /etc/environment
{
    echo '# written by torchenv-entrypoint'
    sed -e 's/^\([^=]*\)=\(.*\)$/export \1="\2"/' /etc/environment
} > /etc/profile.d/torchenv.sh

if [ "${TORCHENV_SSH:-1}" = 1 ]; then
    ssh-keygen -A >/dev/null
    install -d -m 0700 -o "$uid" -g "$gid" "$home/.ssh"
    keys=$home/.ssh/authorized_keys
    : > "$keys"
    if [ -n "${TORCHENV_SSH_PUBKEY:-}" ]; then
        printf '%s\n' "$TORCHENV_SSH_PUBKEY" >> "$keys"
    fi
    if [ -r /run/torchenv/authorized_keys ]; then
        cat /run/torchenv/authorized_keys >> "$keys"
    fi
    chown "$uid:$gid" "$keys"
    chmod 0600 "$keys"
    if [ ! -s "$keys" ]; then
        log "no SSH public key given; sshd will accept nobody"
    fi
    mkdir -p /run/sshd
    chmod 0755 /run/sshd
    /usr/sbin/sshd -e
    log "sshd started"
fi

as_user() {
    exec setpriv --reuid "$uid" --regid "$gid" --init-groups \
        env HOME="$home" USER="$user" LOGNAME="$user" SHELL=/bin/bash "$@"
}

if [ "$#" -gt 0 ]; then
    cd /workspace 2>/dev/null || cd "$home"
    as_user "$@"
fi

if [ "${TORCHENV_JUPYTER:-1}" = 1 ]; then
    token_file=/run/torchenv/jupyter_token
    if [ ! -r "$token_file" ]; then
        log "no Jupyter token at $token_file; refusing to start Jupyter without one"
        exit 1
    fi
    JUPYTER_TOKEN=$(cat "$token_file")
    export JUPYTER_TOKEN
    if command -v jupyter-lab >/dev/null; then
        app=(jupyter-lab)
    elif command -v jupyter-server >/dev/null; then
        app=(jupyter-server)
    else
        app=(python3 -m jupyter_server)
    fi
    cd /workspace
    log "starting ${app[*]}"
    as_user "${app[@]}" --no-browser --ip=0.0.0.0 --port=8888 \
        --ServerApp.root_dir=/workspace
fi

cd /workspace 2>/dev/null || cd "$home"
as_user sleep infinity
