#!/bin/sh
# Peak memory of `candor serve` while it imports a generated CRM export streamed over HTTP
# (`POST /v1/imports`, chunked, `Prefer: respond-async`, polled with `Prefer: wait`), for
# BENCHMARKS.md ("CRM import over HTTP").
#
#   scripts/api-import-memory.sh ROWS [CANDOR_BIN] [QUERY]
#   scripts/api-import-memory.sh 200000 target/release/candor
#   scripts/api-import-memory.sh 1000000 target/release/candor '?dry_run=true'
#
# Works in a fresh installation under ${TMPDIR:-/tmp}; prints the file size, the server's memory
# before and at its peak (VmHWM from /proc, Linux), its VmRSS every 2 s, and the import's own
# figures. Optional environment:
#   CHECKPOINT_SECONDS=N  the server signs a checkpoint every N s (default 60), so that several
#                         fall within the import and the completeness maps it keeps show
#   AFTER=N               after the import, wait N s (checkpoints go on) and print the server's
#                         memory then: what it keeps once the import is over
set -eu
ROWS=$1
BIN=$(realpath "${2:-target/release/candor}")
QUERY=${3:-}
HERE=$(dirname "$(realpath "$0")")
DIR=$(mktemp -d "${TMPDIR:-/tmp}/candor-api-import.XXXXXX")
cd "$DIR"
"$BIN" init --dir . > init.out
if [ -n "${CHECKPOINT_SECONDS:-}" ]; then
  sed -i "s/^checkpoint_interval_seconds = .*/checkpoint_interval_seconds = $CHECKPOINT_SECONDS/" candor.toml
fi
TOKEN=$("$BIN" token create --config candor.toml --role shop_backend)
python3 "$HERE/gen-import.py" "$ROWS" > big.csv
: > serve.out
"$BIN" serve --config candor.toml --listen 127.0.0.1:0 > serve.out 2> serve.log &
PID=$!
trap 'kill $PID 2>/dev/null; wait $PID 2>/dev/null; rm -rf "$DIR"' EXIT
while ! grep -q "listening on" serve.out; do sleep 0.2; done
URL=$(sed -n 's/^listening on //p' serve.out | head -1)
curl -sf "$URL/healthz" > /dev/null
echo "file: $(wc -c < big.csv) bytes, $ROWS rows; server before: $(grep VmHWM /proc/$PID/status | tr -s ' \t' ' ')"
START=$(date +%s.%N)
# The server's resident memory every 2 s while the import runs (printed at the end).
(while kill -0 $PID 2>/dev/null; do awk '/VmRSS/{printf "%d ", $2/1024}' /proc/$PID/status; sleep 2; done) \
  > rss.txt 2>/dev/null &
LOCATION=$(curl -s -D - -o /dev/null -X POST -H "Authorization: Bearer $TOKEN" \
  -H "Candor-Purpose: order_fulfilment" -H "Content-Type: text/csv" -H "Transfer-Encoding: chunked" \
  -H "Prefer: respond-async" --data-binary @big.csv "$URL/v1/imports$QUERY" \
  | sed -n 's/^[Ll]ocation: //p' | tr -d '\r')
while :; do
  JOB=$(curl -s -H "Authorization: Bearer $TOKEN" -H "Candor-Purpose: order_fulfilment" \
    -H "Prefer: wait=20" "$URL$LOCATION")
  echo "$JOB" | grep -q '"state":"\(checking\|importing\)"' || break
done
END=$(date +%s.%N)
echo "$JOB" | python3 -c '
import json, sys
j = json.load(sys.stdin)
report = j.get("report") or {}
o = report.get("outcome")
done = "created: %s, store pass: %s s, %s rows/s" % (o["created"], o["seconds"], o["rows_per_second"]) if o else "dry run"
print("state:", j["state"], "| rows:", j.get("rows"), "| planned creates:", report.get("plan", {}).get("create"), "|", done)'
echo "wall clock (upload, check, store): $(echo "$END - $START" | bc) s"
echo "server peak: $(grep VmHWM /proc/$PID/status | tr -s ' \t' ' ')"
echo "server VmRSS every 2 s (MiB): $(cat rss.txt)"
if [ "${AFTER:-0}" -gt 0 ]; then
  sleep "$AFTER"
  echo "server ${AFTER} s after the import: $(grep VmRSS /proc/$PID/status | tr -s ' \t' ' ')"
fi
