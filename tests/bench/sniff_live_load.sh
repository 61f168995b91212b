#!/bin/sh
# sniff_live_load.sh: does a live calc-sniff keep up with calc-server at full benchmark load?
# (A dropped packet makes a verdict inconclusive, so a live capture must keep up with the
# fastest traffic the lab produces.)
# Starts calc-server on a free loopback port, starts `calc-sniff -i lo --stats` on that port and
# waits for its ready file, runs calc-bench (16 connections, E1; one request per connection,
# then keep-alive, SECONDS each), stops the capture and prints the kernel's drop count next to
# the load. Needs root (live capture). Bounded: everything stops by itself or at the trap.
#
# usage: tests/bench/sniff_live_load.sh [BUILD_DIR] [SECONDS]   (default: build, 4)
set -eu
root=$(cd "$(dirname "$0")/../.." && pwd)
build=${1:-$root/build}
secs=${2:-4}
for b in calc-server calc-sniff calc-bench; do
  [ -x "$build/$b" ] || { echo "sniff_live_load: $build/$b not built" >&2; exit 2; }
done
port=$(/usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
tmp=$(mktemp -d)
pids=""
cleanup() { for p in $pids; do kill "$p" 2>/dev/null || true; done; rm -rf "$tmp"; }
trap cleanup EXIT INT TERM

"$build/calc-server" -q -p "$port" & pids="$pids $!"
"$build/calc-sniff" -i lo -p "$port" --server-port "$port" --stats --duration $((2 * secs + 20)) \
  --ready-file "$tmp/ready" >"$tmp/stats" 2>"$tmp/err" & sniff=$!
pids="$pids $sniff"
i=0
while [ ! -e "$tmp/ready" ]; do
  i=$((i + 1)); [ "$i" -lt 100 ] || { cat "$tmp/err" >&2; exit 2; }
  sleep 0.1
done
echo "load: calc-bench -c 16 against calc-server on port $port, ${secs}s per mode"
"$build/calc-bench" -p "$port" -c 16 -d "$secs" | sed 's/^/  per-connection: /'
"$build/calc-bench" -p "$port" -c 16 -d "$secs" -k | sed 's/^/  keep-alive:     /'
sleep 0.5
kill -INT "$sniff"
wait "$sniff" || true
echo "calc-sniff (live, lo):"
sed 's/^/  /' "$tmp/err"
grep -E "packets|connections|messages" "$tmp/stats" | head -6 | sed 's/^/  /'
drops=$(sed -n 's/.* \([0-9][0-9]*\) dropped by kernel.*/\1/p' "$tmp/err" | tail -n 1)
echo "SUMMARY: kernel drops during full load: ${drops:-unknown}"
[ "${drops:-1}" = 0 ]
