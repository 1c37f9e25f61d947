#!/usr/bin/env bash
# Start the API and one worker; Ctrl-C (or SIGTERM) stops both and waits for them.
set -u
BIN=${BIN:-.venv/bin}
"$BIN/python" -m service --host "${HOST:-127.0.0.1}" --port "${PORT:-8000}" &
api=$!
"$BIN/python" -m worker &
worker=$!

stop() {
  trap - INT TERM
  kill -TERM "$api" "$worker" 2>/dev/null
  wait "$api" "$worker" 2>/dev/null
  exit 0
}
trap stop INT TERM
echo "dirconv: API on http://${HOST:-127.0.0.1}:${PORT:-8000} (pid $api), worker pid $worker; Ctrl-C stops both"
# If either process exits on its own, stop the other too.
wait -n "$api" "$worker"
status=$?
kill -TERM "$api" "$worker" 2>/dev/null
wait "$api" "$worker" 2>/dev/null
exit "$status"
