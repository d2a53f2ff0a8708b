#!/bin/sh
# Install dagloop as a systemd service, as in the operations guide.
# Run as root from the repository root:  sudo deploy/systemd/install.sh
# Environment: PYTHON (default python3), PREFIX (default /opt/dagu), SKIP_START=1 to only enable.
set -eu

PYTHON="${PYTHON:-python3}"
PREFIX="${PREFIX:-/opt/dagu}"
HERE="$(cd "$(dirname "$0")" && pwd)"
REPO="$(cd "$HERE/../.." && pwd)"

if [ "$(id -u)" -ne 0 ]; then
    echo "install.sh: run as root" >&2
    exit 1
fi

# User and directories (dags/ stays writable by the owner only through deployment, not the unit).
if ! id dagu >/dev/null 2>&1; then
    useradd --system --home-dir "$PREFIX" --shell /usr/sbin/nologin dagu
fi
mkdir -p "$PREFIX/dags" "$PREFIX/data" "$PREFIX/logs" /etc/dagu
chown -R dagu:dagu "$PREFIX"

# The program: a virtualenv under /opt/dagloop, linked to /usr/local/bin/dagloop.
"$PYTHON" -m venv /opt/dagloop
/opt/dagloop/bin/pip install --upgrade pip
/opt/dagloop/bin/pip install "$REPO"
ln -sf /opt/dagloop/bin/dagloop /usr/local/bin/dagloop

# Configuration: keep an existing environment file.
if [ ! -e /etc/dagu/environment ]; then
    install -m 0640 -o root -g dagu "$HERE/environment" /etc/dagu/environment
fi

install -m 0644 "$HERE/dagloop.service" /etc/systemd/system/dagloop.service
systemctl daemon-reload
systemctl enable dagloop
if [ "${SKIP_START:-0}" != "1" ]; then
    systemctl restart dagloop
    systemctl --no-pager status dagloop || true
fi
echo "installed; logs: journalctl -u dagloop -f"
