#!/usr/bin/env bash
# Load bar for /metrics (results in docs/PERFORMANCE.md): under `wrk -c64 -d15s` the daemon
# answers every request with 200, at >= 2000 requests/s on a 2-core machine, and its RSS after
# the load is within 2x + 4 MiB of before.
#
# Builds the release binary, runs `lastfm-monitor demo` (the daemon against the built-in
# simulator, no network), lets it probe for a few seconds so every series exists, loads /metrics
# with wrk (Debian's package, installed with apt-get when missing), and prints requests/s,
# non-2xx responses, socket errors and RSS before and after. Exits non-zero when a bar fails.
#
# Knobs (environment): PORT (19987), CONNECTIONS (64), THREADS (2), DURATION (15s),
# MIN_RPS (2000), WARM_UP_SECONDS (5).
set -euo pipefail
cd "$(dirname "$0")/.."

PORT=${PORT:-19987}
CONNECTIONS=${CONNECTIONS:-64}
THREADS=${THREADS:-2}
DURATION=${DURATION:-15s}
MIN_RPS=${MIN_RPS:-2000}
WARM_UP_SECONDS=${WARM_UP_SECONDS:-5}
URL="http://127.0.0.1:${PORT}/metrics"

if ! command -v wrk >/dev/null 2>&1; then
  echo "== wrk not found: installing Debian's wrk package" >&2
  if [ "$(id -u)" -eq 0 ]; then
    apt-get install -y wrk || { apt-get update && apt-get install -y wrk; }
  else
    sudo apt-get install -y wrk || { sudo apt-get update && sudo apt-get install -y wrk; }
  fi
fi

echo "== building the release binary"
cargo build --release --locked --quiet
bin=target/release/lastfm-monitor

work=$(mktemp -d)
pid=""
cleanup() {
  if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
    kill "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  fi
  rm -rf "$work"
}
trap cleanup EXIT

echo "== starting the demo on 127.0.0.1:${PORT}"
"$bin" demo --web.listen-address "127.0.0.1:${PORT}" >"$work/demo.log" 2>&1 &
pid=$!
ready=""
for _ in $(seq 1 100); do
  if curl -sf "http://127.0.0.1:${PORT}/-/ready" >/dev/null 2>&1; then
    ready=yes
    break
  fi
  if ! kill -0 "$pid" 2>/dev/null; then break; fi
  sleep 0.1
done
if [ -z "$ready" ]; then
  echo "FAIL: the demo did not become ready" >&2
  cat "$work/demo.log" >&2
  exit 1
fi
sleep "$WARM_UP_SECONDS"

rss_kib() { awk '/^VmRSS:/ { print $2 }' "/proc/$pid/status"; }
series=$(curl -sf "$URL" | grep -vc '^#' || true)
bytes=$(curl -sf "$URL" | wc -c)
rss_before=$(rss_kib)

echo "== wrk -t${THREADS} -c${CONNECTIONS} -d${DURATION} ${URL}  (${series} series, ${bytes} bytes)"
wrk -t"$THREADS" -c"$CONNECTIONS" -d"$DURATION" --latency "$URL" | tee "$work/wrk.txt"
sleep 1
rss_after=$(rss_kib)

rps=$(awk '/^Requests\/sec:/ { print $2 }' "$work/wrk.txt")
requests=$(awk '/requests in/ { print $1 }' "$work/wrk.txt")
non2xx=$(awk -F': *' '/Non-2xx or 3xx responses/ { print $2 }' "$work/wrk.txt")
non2xx=${non2xx:-0}
socket_errors=$(awk '/Socket errors/ {
  n = 0
  for (i = 1; i <= NF; i++) if ($i ~ /^[0-9]+,?$/) { gsub(",", "", $i); n += $i }
  print n
}' "$work/wrk.txt")
socket_errors=${socket_errors:-0}
rss_limit=$((2 * rss_before + 4096))

echo
echo "== results"
printf '  requests      %s\n' "$requests"
printf '  requests/s    %s (bar: >= %s)\n' "$rps" "$MIN_RPS"
printf '  non-2xx       %s (bar: 0)\n' "$non2xx"
printf '  socket errors %s (bar: 0)\n' "$socket_errors"
printf '  RSS before    %s KiB\n' "$rss_before"
printf '  RSS after     %s KiB (bar: <= 2 x before + 4 MiB = %s KiB)\n' "$rss_after" "$rss_limit"

failed=0
if ! awk -v r="$rps" -v m="$MIN_RPS" 'BEGIN { exit !(r >= m) }'; then
  echo "FAIL: ${rps} requests/s is below ${MIN_RPS}" >&2
  failed=1
fi
if [ "$non2xx" -ne 0 ]; then
  echo "FAIL: ${non2xx} responses were not 2xx" >&2
  failed=1
fi
if [ "$socket_errors" -ne 0 ]; then
  echo "FAIL: ${socket_errors} socket errors" >&2
  failed=1
fi
if [ "$rss_after" -gt "$rss_limit" ]; then
  echo "FAIL: RSS ${rss_after} KiB after the load exceeds ${rss_limit} KiB" >&2
  failed=1
fi
if ! kill -0 "$pid" 2>/dev/null; then
  echo "FAIL: the daemon died under load" >&2
  cat "$work/demo.log" >&2
  failed=1
fi
if [ "$failed" -eq 0 ]; then
  echo "PASS"
fi
exit "$failed"
