#!/bin/sh
# sniff_bench.sh: calc-sniff's full analysis time on one crafted capture of calculator traffic
# (>= 150,000 packets) next to `tshark -r FILE -q -z conv,tcp` and a bare libpcap read loop
# (tests/tools/pcap_readloop.c), same file, same run, with ratios against calc-sniff's speed
# targets (docs/sniff.md, "Performance and benchmark"): at least 50x faster than tshark, at most
# 3x the bare loop, i.e. reading the file stays the larger part of the cost.
#
# "Full analysis" is the default run, `calc-sniff -r FILE` with its output (the per-packet
# timeline and the connection summary) sent to /dev/null: it reassembles every connection,
# frames every message, decodes every payload and writes every note and line. `--stats` is
# also shown but skips payload decoding and notes, so it is not the headline figure. With
# CALLGRIND=1 (and valgrind installed) the instruction counts of the loop and of the full
# analysis are printed too: on a shared machine they are the repeatable measure.
#
# A second capture of many short one-request connections, where per-connection costs dominate,
# is timed the same way (targets: full analysis at least 50x faster than tshark, --json, which
# the lab reads, at most 3x the bare loop).
#
# usage: tests/bench/sniff_bench.sh [BUILD_DIR] [EXCHANGES] [CONNS]
#   BUILD_DIR  holds calc-sniff and pcap_readloop (default: build); use a release build
#   EXCHANGES  rounds of scenario 3.2 traffic to craft (default 4000: ~200,000 packets)
#   CONNS      one-request connections of the second capture (default 57042: 570,420 packets)
# best() prints "WALL CPU", which `set -- $(best ...)` splits on purpose into $1 and $2.
# shellcheck disable=SC2046
set -eu
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
build=${1:-$root/build}
rounds=${2:-4000}
conns=${3:-57042}
sniff=$build/calc-sniff
loop=$build/pcap_readloop
vectors=${CALC_VECTORS:-$root/captures/vectors}
for b in "$sniff" "$loop"; do
  [ -x "$b" ] || { echo "sniff_bench: $b not built (cmake --build $build --target calc-sniff pcap_readloop)" >&2; exit 2; }
done
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT INT TERM
cap=$tmp/bench.pcap

# Craft the captures (tests/bench/craft_capture.py, real payloads from the vectors): ROUNDS x
# scenario 3.2, and CONNS short connections of one request each (E1 answered by a canned server:
# 10 segments per connection), the load of many short connections.
python3 "$here/craft_capture.py" "$cap" "$vectors/legacy-expressions.jsonl" 3.2 "$rounds"
many=$tmp/many.pcap
python3 "$here/craft_capture.py" "$many" "$vectors/legacy-expressions.jsonl" one "$conns"

# best() prints "WALL CPU": the best of 5 runs of "$@" (output discarded) in wall-clock seconds
# and in CPU seconds (user+system of the child, from getrusage): the machine is shared, and CPU
# time is the steadier measure when other jobs compete for the cores.
best() {
  python3 - "$@" <<'PY' || { echo "sniff_bench: '$*' failed" >&2; exit 1; }
import os, resource, subprocess, sys, time
bw = bc = 1e9
for _ in range(5):
    r0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    rc = subprocess.call(sys.argv[1:], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    t1 = time.perf_counter()
    r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    if rc not in (0,):
        sys.exit(1)
    bw = min(bw, t1 - t0)
    bc = min(bc, (r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime))
print(f"{bw:.4f} {bc:.4f}")
PY
}
pkts=$("$loop" "$cap" | awk '{print $1}')
set -- $(best "$loop" "$cap"); w_loop=$1; c_loop=$2
set -- $(best "$sniff" -r "$cap"); w_full=$1; c_full=$2
set -- $(best "$sniff" -r "$cap" --stats); w_sum=$1; c_sum=$2
set -- $(best "$sniff" -r "$cap" --json); w_json=$1; c_json=$2
set -- $(best "$sniff" verify --golden "$cap" -r "$cap"); w_ver=$1; c_ver=$2
ratio() { echo "$1 $2" | awk '{printf "%.2f", $1/$2}'; }
echo "capture: $pkts packets (best of 5 runs; wall and CPU seconds)"
printf '%-44s %7s s wall %7s s cpu\n' "bare libpcap read loop (pcap_readloop)" "$w_loop" "$c_loop"
printf '%-44s %7s s wall %7s s cpu  %sx / %sx the bare loop\n' "calc-sniff -r FILE >/dev/null (full analysis)" "$w_full" "$c_full" "$(ratio "$w_full" "$w_loop")" "$(ratio "$c_full" "$c_loop")"
printf '%-44s %7s s wall %7s s cpu  %sx / %sx the bare loop\n' "calc-sniff --stats (no decoding, no notes)" "$w_sum" "$c_sum" "$(ratio "$w_sum" "$w_loop")" "$(ratio "$c_sum" "$c_loop")"
printf '%-44s %7s s wall %7s s cpu  %sx / %sx the bare loop\n' "calc-sniff --json (+ every payload decoded)" "$w_json" "$c_json" "$(ratio "$w_json" "$w_loop")" "$(ratio "$c_json" "$c_loop")"
printf '%-44s %7s s wall %7s s cpu  (2 analyses + compare: %sx / %sx two loops)\n' "calc-sniff verify (file against itself)" "$w_ver" "$c_ver" "$(ratio "$w_ver" "$(echo "$w_loop" | awk '{print 2*$1}')")" "$(ratio "$c_ver" "$(echo "$c_loop" | awk '{print 2*$1}')")"
if command -v tshark >/dev/null 2>&1; then
  set -- $(best tshark -r "$cap" -q -z conv,tcp); w_ts=$1; c_ts=$2
  printf '%-44s %7s s wall %7s s cpu\n' "tshark -r FILE -q -z conv,tcp" "$w_ts" "$c_ts"
  echo "calc-sniff's full analysis is $(ratio "$w_ts" "$w_full")x faster than tshark (wall), $(ratio "$c_ts" "$c_full")x (cpu); --stats $(ratio "$w_ts" "$w_sum")x, --json $(ratio "$w_ts" "$w_json")x (wall)"
  tgt_ts=$(echo "$w_ts $w_full" | awk '{print ($1 / $2 >= 50) ? "met" : "NOT met"}')
else
  echo "tshark: not installed here, no comparison (install tshark and rerun)"
  tgt_ts="not measured (no tshark)"
fi
tgt_loop=$(echo "$w_full $w_loop" | awk '{print ($1 / $2 <= 3) ? "met" : "NOT met"}')
echo "targets (wall): at least 50x faster than tshark: $tgt_ts; at most 3x the bare loop: $tgt_loop"
if [ "${CALLGRIND:-0}" = 1 ] && command -v valgrind >/dev/null 2>&1; then
  # ir CMD...: instructions executed by CMD (output discarded), from callgrind's summary
  ir() {
    valgrind --tool=callgrind --callgrind-out-file=/dev/null "$@" 2>&1 >/dev/null |
      awk '/Collected/ {print $NF}'
  }
  i_loop=$(ir "$loop" "$cap"); i_full=$(ir "$sniff" -r "$cap"); i_sum=$(ir "$sniff" -r "$cap" --stats)
  echo "instructions (callgrind): bare loop $i_loop, full analysis $i_full ($(ratio "$i_full" "$i_loop")x), --stats $i_sum ($(ratio "$i_sum" "$i_loop")x)"
fi

# The capture of many short connections: full analysis against tshark, --json against the loop.
pkts=$("$loop" "$many" | awk '{print $1}')
set -- $(best "$loop" "$many"); w_loop=$1; c_loop=$2
set -- $(best "$sniff" -r "$many"); w_full=$1; c_full=$2
set -- $(best "$sniff" -r "$many" --json); w_json=$1; c_json=$2
echo
echo "capture of $conns one-request connections: $pkts packets (best of 5 runs; wall and CPU seconds)"
printf '%-44s %7s s wall %7s s cpu\n' "bare libpcap read loop (pcap_readloop)" "$w_loop" "$c_loop"
printf '%-44s %7s s wall %7s s cpu  %sx / %sx the bare loop\n' "calc-sniff -r FILE >/dev/null (full analysis)" "$w_full" "$c_full" "$(ratio "$w_full" "$w_loop")" "$(ratio "$c_full" "$c_loop")"
printf '%-44s %7s s wall %7s s cpu  %sx / %sx the bare loop\n' "calc-sniff --json" "$w_json" "$c_json" "$(ratio "$w_json" "$w_loop")" "$(ratio "$c_json" "$c_loop")"
tgt_json=$(echo "$w_json $w_loop" | awk '{print ($1 / $2 <= 3) ? "met" : "NOT met"}')
if command -v tshark >/dev/null 2>&1; then
  set -- $(best tshark -r "$many" -q -z conv,tcp); w_ts=$1; c_ts=$2
  printf '%-44s %7s s wall %7s s cpu\n' "tshark -r FILE -q -z conv,tcp" "$w_ts" "$c_ts"
  echo "calc-sniff's full analysis is $(ratio "$w_ts" "$w_full")x faster than tshark (wall), $(ratio "$c_ts" "$c_full")x (cpu)"
  tgt_ts=$(echo "$w_ts $w_full" | awk '{print ($1 / $2 >= 50) ? "met" : "NOT met"}')
else
  tgt_ts="not measured (no tshark)"
fi
echo "targets for short connections (wall): full analysis at least 50x faster than tshark: $tgt_ts; --json at most 3x the bare loop: $tgt_json"
