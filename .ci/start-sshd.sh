#!/usr/bin/env bash
# Start a throw-away sshd on 127.0.0.1:2222 for the ssh device tests (idempotent).
#
# Keys live under $EASREC_SSH_DIR (default $HOME/.easrec-ci-ssh):
#   host_ed25519      host key of this sshd
#   client_ed25519    client key, authorized for the current user
#   sshd_config, authorized_keys, sshd.pid, sshd.log
# Tests connect with: ssh -i $DIR/client_ed25519 -p 2222 $USER@127.0.0.1
set -euo pipefail

DIR="${EASREC_SSH_DIR:-$HOME/.easrec-ci-ssh}"
PORT="${EASREC_SSH_PORT:-2222}"
USER_NAME="$(id -un)"

SUDO=""
if [ "$(id -u)" -ne 0 ] && command -v sudo >/dev/null 2>&1; then SUDO="sudo -n"; fi

if [ ! -x /usr/sbin/sshd ] || ! command -v ssh >/dev/null 2>&1; then
    echo "start-sshd: installing openssh-server openssh-client" >&2
    export DEBIAN_FRONTEND=noninteractive
    $SUDO apt-get update -qq
    $SUDO apt-get install -y -qq --no-install-recommends openssh-server openssh-client >/dev/null
fi

mkdir -p "$DIR"
chmod 700 "$DIR"
[ -f "$DIR/host_ed25519" ] || ssh-keygen -q -t ed25519 -N "" -C easrec-ci-host -f "$DIR/host_ed25519"
[ -f "$DIR/client_ed25519" ] || ssh-keygen -q -t ed25519 -N "" -C easrec-ci-client -f "$DIR/client_ed25519"
cp "$DIR/client_ed25519.pub" "$DIR/authorized_keys"
chmod 600 "$DIR/authorized_keys" "$DIR/host_ed25519" "$DIR/client_ed25519"

cat > "$DIR/sshd_config" <<CFG
ListenAddress 127.0.0.1
Port $PORT
HostKey $DIR/host_ed25519
PidFile $DIR/sshd.pid
AuthorizedKeysFile $DIR/authorized_keys
AllowUsers $USER_NAME
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
PermitRootLogin prohibit-password
StrictModes no
UsePAM no
X11Forwarding no
PrintMotd no
LogLevel INFO
Subsystem sftp internal-sftp
CFG

port_open() {
    (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null && exec 3>&- 3<&-
}

# Already running from an earlier call: keep it (config and keys are unchanged).
if [ -f "$DIR/sshd.pid" ] && kill -0 "$(cat "$DIR/sshd.pid")" 2>/dev/null && port_open; then
    echo "start-sshd: already running on 127.0.0.1:$PORT (pid $(cat "$DIR/sshd.pid"))" >&2
    exit 0
fi

$SUDO mkdir -p /run/sshd
$SUDO chmod 755 /run/sshd 2>/dev/null || true
/usr/sbin/sshd -t -f "$DIR/sshd_config"
/usr/sbin/sshd -f "$DIR/sshd_config" -E "$DIR/sshd.log"

for _ in $(seq 1 50); do
    if port_open; then
        echo "start-sshd: listening on 127.0.0.1:$PORT; key $DIR/client_ed25519 for $USER_NAME" >&2
        exit 0
    fi
    sleep 0.1
done
echo "start-sshd: sshd did not accept on 127.0.0.1:$PORT; see $DIR/sshd.log" >&2
exit 1
