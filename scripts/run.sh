#!/usr/bin/env bash
# `make run`: certificates if missing, the relay on ./data in the background,
# and a client in the foreground: the window when there is a display, the
# terminal client otherwise. The relay stops with the client.
set -euo pipefail
cd "$(dirname "$0")/.."
CERTS=${CERTS:-certs}
DATA=${DATA:-data}
LISTEN=${LISTEN:-127.0.0.1:4433}
BIN=target/release

if [ ! -f "$CERTS/cert.pem" ]; then
  "$BIN/relay" gen-cert --out "$CERTS"
fi
mkdir -p "$DATA"
"$BIN/relay" serve --cert "$CERTS/cert.pem" --key "$CERTS/key.pem" --listen "$LISTEN" --data "$DATA" \
  >"$DATA/relay.out" 2>"$DATA/relay.log" &
relay_pid=$!
trap 'kill -TERM $relay_pid 2>/dev/null; wait $relay_pid 2>/dev/null || true' EXIT
for _ in $(seq 50); do
  grep -q "listening on" "$DATA/relay.out" 2>/dev/null && break
  kill -0 $relay_pid 2>/dev/null || { cat "$DATA/relay.log" >&2; exit 1; }
  sleep 0.1
done
cat "$DATA/relay.out"
echo "relay log: $DATA/relay.log"

user=${CONFAB_USER:-${USER:-me}}
# A window where there is a display; the terminal client otherwise.
if { [ -n "${DISPLAY:-}" ] || [ -n "${WAYLAND_DISPLAY:-}" ]; } && [ -x "$BIN/client-gui" ]; then
  echo "opening the confab window; tick \"Create account\" the first time"
  "$BIN/client-gui" --server "$LISTEN" --ca "$CERTS/cert.pem" --user "$user"
  exit
fi
if [ -z "${CONFAB_PASSWORD:-}" ]; then
  read -r -s -p "password for $user: " CONFAB_PASSWORD; echo
  export CONFAB_PASSWORD
fi
register=()
if ! "$BIN/relay" user list --data "$DATA" | cut -f1 | grep -qix "$user"; then
  echo "creating account $user"
  register=(--register)
fi
"$BIN/client-cli" --server "$LISTEN" --ca "$CERTS/cert.pem" --user "$user" "${register[@]}"
