#!/bin/bash -p
# torchenv-entrypoint: the first process under tini in every torchenv
# container. It runs as root only long enough to
#   1. map user `dev` to the host user's UID/GID (TORCHENV_UID/TORCHENV_GID;
#      system ids below 1000, root and ids above 60000 keep dev's own), so
#      files written into bind mounts belong to that user on the host;
#   2. generate this container's own SSH host key (none is in the image);
#   3. install the user's public key (the read-only file
#      /run/torchenv/authorized_keys) as /etc/ssh/authorized_keys/dev,
#      root-owned, and start sshd (key-only, no root, no forwarding unless
#      TORCHENV_SSH_FORWARDING=1);
#   4. start JupyterLab as `dev` on 0.0.0.0:8888 in /workspace with the token
#      read from /run/torchenv/jupyter_token (a read-only bind of a 0600 file;
#      the token never appears in the container's config or the image),
# or, when a command is given, run that command as `dev` instead (no sshd,
# no Jupyter: `docker run IMAGE python …` just runs python).
#
# As root it never follows a path `dev` controls: nothing under the home is
# written (the home is re-owned only when the uid changes, on a container's
# first start, with `chown -h`), keys and environment go to root-owned files.
# Processes of `dev` run with no-new-privileges and an empty capability
# bounding set.
#
# `bash -p`: no $BASH_ENV/$ENV, no functions or SHELLOPTS from the
# environment (the spec refuses such variables too).
#
# Switches (set by `cargo xtask up`): TORCHENV_SSH=0|1 / TORCHENV_JUPYTER=0|1
# (default: 1 without a command, 0 with one), TORCHENV_SSH_FORWARDING=0|1.
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

# Only ordinary ids are mapped: root would make `dev` root (and sshd's "no
# root login" refuse it); a system id (< 1000: shadow 42, tty 5, …) or one
# above 60000 (nobody) would hand `dev` that group's or user's files.
ordinary() { [[ "$1" =~ ^[0-9]+$ ]] && [ "$1" -ge 1000 ] && [ "$1" -le 60000 ]; }
if ! ordinary "$uid"; then
    log "host uid $uid is not an ordinary user id (1000-60000); keeping $user's uid $(id -u "$user")"
    uid=$(id -u "$user")
fi
if ! ordinary "$gid"; then
    log "host gid $gid is not an ordinary group id (1000-60000); keeping $user's gid $(id -g "$user")"
    gid=$(id -g "$user")
fi

old_uid=$(id -u "$user")
old_gid=$(id -g "$user")
if [ "$gid" != "$old_gid" ]; then
    groupmod -o -g "$gid" "$user"
fi
if [ "$uid" != "$old_uid" ]; then
    # Not `usermod -u` with the home set: it would re-own every file of the
    # old uid below the home, also in mounts below it (a host folder of the
    # host's uid 1000). The home alone is re-owned below, with -xdev.
    # -o: the host UID may already name an image user (e.g. 1000 vs 1001).
    usermod -d /nonexistent "$user"
    usermod -o -u "$uid" "$user"
    usermod -d "$home" "$user"
fi
if [ "$uid" != "$old_uid" ] || [ "$gid" != "$old_gid" ]; then
    # The home only; -xdev keeps out of anything mounted below it.
    find "$home" -xdev \( -uid "$old_uid" -o -gid "$old_gid" \) \
        -exec chown -h "$uid:$gid" {} +
fi

# The environment of the container (PATH with /opt/venv, spec `env:`) for
# SSH sessions, which sshd starts with a clean environment: pam_env reads
# /etc/environment (NAME=VALUE, no shell), login shells source the profile
# script, where every value is shell-quoted (`printf %q`). A value with a
# newline is dropped (the spec refuses them at load time).
env_names() {
    env | grep -oE '^(PATH|LANG|LC_ALL|VIRTUAL_ENV|NVIDIA_[A-Z_]*|CUDA_[A-Z_]*|TORCHENV_ENV)=' | tr -d = || true
    for name in ${TORCHENV_USER_ENV:-}; do
        [[ "$name" =~ ^[A-Za-z_][A-Za-z0-9_]*$ ]] && echo "$name"
    done
}
{
    echo '# written by torchenv-entrypoint'
    : > /etc/environment
    for name in $(env_names); do
        value=${!name-}
        if [[ "$value" == *$'\n'* || "$value" == *$'\r'* ]]; then
            log "environment variable $name has a newline; not exported to SSH sessions"
            continue
        fi
        printf 'export %s=%q\n' "$name" "$value"
        # pam_env reads `#` as a comment, strips quotes, joins lines at `\`:
        # such a value reaches login shells only.
        if [[ "$value" == *['#\\$']* || "$value" == [\"\']* ]]; then
            log "environment variable $name reaches login shells only (pam_env cannot hold its value)"
            continue
        fi
        printf '%s=%s\n' "$name" "$value" >> /etc/environment
    done
} > /etc/profile.d/torchenv.sh
chmod 0644 /etc/environment /etc/profile.d/torchenv.sh

if [ "${TORCHENV_SSH:-1}" = 1 ]; then
    # One ed25519 host key per container (kept across restarts).
    if [ ! -s /etc/ssh/ssh_host_ed25519_key ]; then
        rm -f /etc/ssh/ssh_host_ed25519_key /etc/ssh/ssh_host_ed25519_key.pub
        ssh-keygen -q -t ed25519 -N '' -C "torchenv-${TORCHENV_ENV:-container}" \
            -f /etc/ssh/ssh_host_ed25519_key
    fi
    # The key `up` gave, into a root-owned file outside the home.
    keys_dir=/etc/ssh/authorized_keys
    mkdir -p "$keys_dir"
    chown root:root "$keys_dir"
    chmod 0755 "$keys_dir"
    keys=$keys_dir/$user
    tmp=$(mktemp "$keys_dir/.$user.XXXXXX")
    if [ -r /run/torchenv/authorized_keys ]; then
        grep -E '^[a-z0-9@.-]+ [A-Za-z0-9+/=]+( .*)?$' /run/torchenv/authorized_keys > "$tmp" || true
    fi
    chmod 0644 "$tmp"
    mv -f "$tmp" "$keys"
    if [ ! -s "$keys" ]; then
        log "no SSH public key given; sshd accepts only keys in ~$user/.ssh/authorized_keys"
    fi
    mkdir -p /run/sshd
    chmod 0755 /run/sshd
    forwarding=()
    if [ "${TORCHENV_SSH_FORWARDING:-0}" = 1 ]; then
        forwarding=(-o AllowTcpForwarding=yes)
        log "sshd allows TCP forwarding (ssh.forwarding: true)"
    fi
    # A clean environment: nothing of the container's reaches sshd (it
    # re-executes itself as root for every connection).
    env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin LANG=C.UTF-8 \
        /usr/sbin/sshd -e "${forwarding[@]}"
    log "sshd started"
fi

as_user() {
    exec setpriv --reuid "$uid" --regid "$gid" --init-groups \
        --no-new-privs --bounding-set -all --inh-caps -all \
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
