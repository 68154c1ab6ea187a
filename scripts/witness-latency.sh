#!/usr/bin/env bash
# Witness cosigning latency, end to end: one `candor witness serve` on loopback answering
# `add-checkpoint` (parse, log signature, consistency check, cosign, state written with fsync and
# rename) for a real Candor checkpoint, N times; prints the median and 95th percentile that curl
# measures. Usage: scripts/witness-latency.sh [candor binary] [N]
set -euo pipefail
BIN=$(realpath "${1:-target/release/candor}")
N=${2:-200}
[ -x "$BIN" ] || { echo "no $BIN: cargo build --release --bin candor (or pass a binary)" >&2; exit 1; }
D=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null; rm -rf "$D"' EXIT
"$BIN" init --dir "$D/c" > /dev/null
wait_url() { for _ in $(seq 600); do u=$(sed -n 's/^listening on //p' "$1"); [ -n "$u" ] && { echo "$u"; return; }; sleep 0.1; done; echo "did not start" >&2; exit 1; }
"$BIN" serve --config "$D/c/candor.toml" --listen 127.0.0.1:0 > "$D/serve.out" 2> "$D/serve.log" &
SERVER=$!
U=$(wait_url "$D/serve.out")
KEY=$(curl -s "$U/v1/log/key" | python3 -c 'import json,sys; print(json.load(sys.stdin)["verifier_key"])')
curl -s "$U/v1/log/checkpoint" > "$D/note"
kill $SERVER
"$BIN" witness init --dir "$D/w" --name bench.example/w --log "$KEY" > /dev/null
(cd "$D/w" && exec "$BIN" witness serve --config witness.toml --listen 127.0.0.1:0 > "$D/w.out" 2> "$D/w.log") &
W=$(wait_url "$D/w.out")
SIZE=$(sed -n 2p "$D/note")
{ printf 'old 0\n\n'; cat "$D/note"; } > "$D/first"
curl -sf --data-binary @"$D/first" "$W/add-checkpoint" > /dev/null
# The same checkpoint again (old = size, same root): the witness does all its work and cosigns.
{ printf 'old %s\n\n' "$SIZE"; cat "$D/note"; } > "$D/again"
for _ in $(seq "$N"); do
  curl -sf -o /dev/null -w '%{time_total}\n' --data-binary @"$D/again" "$W/add-checkpoint"
done | sort -n | awk '{a[NR]=$1} END {printf "witness add-checkpoint, %d requests: median %.2f ms, p95 %.2f ms\n", NR, a[int(NR/2)+1]*1000, a[int(NR*0.95)]*1000}'
