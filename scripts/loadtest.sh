#!/usr/bin/env bash
# Measures a running Candor with a public load generator, wrk (Debian package `wrk`), the way
# anyone can measure another system on their own machine.
#
#   scripts/loadtest.sh                      # SQLite, 10,000 customers, 10 s per run, 3 runs
#   scripts/loadtest.sh --postgres postgres://postgres@127.0.0.1:5432/test
#
# It builds the release binary (or uses $CANDOR_BIN), creates a fresh installation in a
# temporary directory (`candor init`; with --postgres in a new database on that server), starts
# its own `candor serve` process on a free port, seeds customers over the HTTP API, then drives
# each scenario with `wrk -t2 -c64 -d<seconds>s --latency` and prints one table: throughput,
# p50 and p99 latency (medians over the runs), each scenario's share of the /healthz rate
# measured in the same run, the server's CPU per request (from /proc/<pid>/stat) and the
# server's RSS (at start, idle after seeding, and peak over the whole run; the first two split
# into mapped files, mostly code, and private memory).
#
# Options (or environment variables):
#   --customers N   (LOADTEST_CUSTOMERS, default 10000) customers seeded before the scenarios
#   --seconds S     (LOADTEST_SECONDS, default 10)      length of each wrk run
#   --runs R        (LOADTEST_RUNS, default 3)          runs per scenario (medians reported)
#   --clients C     (LOADTEST_CLIENTS, default 64)      wrk connections
#   --postgres URL  (LOADTEST_POSTGRES)                 serve from a fresh database on this server
#   --only LIST     (LOADTEST_ONLY) comma-separated scenario names, e.g. healthz,read
#   --preload FILE  (LOADTEST_PRELOAD) before the server starts, import the customers of FILE
#                   with `candor import subjects FILE --purpose order_fulfilment` (e.g. a
#                   million made-up ones from scripts/gen-import.py), so the scenarios run
#                   against a large database; the seeded customers come on top
#   --keep          keep the temporary installation (its path is printed)
# Scenarios: healthz read read_paced read_consent lookup create correction event consent.
# read_paced aims at half the throughput `read` just reached (wrk has no open-loop mode: each
# connection pauses after an answer so that answer + pause last clients/(rate/2) s; closed-loop
# pacing with think time, so its table line shows the rate it actually reached).
set -euo pipefail

customers=${LOADTEST_CUSTOMERS:-10000}
seconds=${LOADTEST_SECONDS:-10}
runs=${LOADTEST_RUNS:-3}
clients=${LOADTEST_CLIENTS:-64}
postgres=${LOADTEST_POSTGRES:-}
only=${LOADTEST_ONLY:-}
preload=${LOADTEST_PRELOAD:-}
keep=0
while [ $# -gt 0 ]; do
    case "$1" in
        --customers) customers=$2; shift 2 ;;
        --seconds) seconds=$2; shift 2 ;;
        --runs) runs=$2; shift 2 ;;
        --clients) clients=$2; shift 2 ;;
        --postgres) postgres=$2; shift 2 ;;
        --only) only=$2; shift 2 ;;
        --preload) preload=$2; shift 2 ;;
        --keep) keep=1; shift ;;
        -h|--help) awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"; exit 0 ;;
        *) echo "loadtest: unknown option $1 (see --help)" >&2; exit 2 ;;
    esac
done
for n in "$customers" "$seconds" "$runs" "$clients"; do
    case "$n" in ''|*[!0-9]*|0) echo "loadtest: --customers, --seconds, --runs and --clients take a whole number above 0 (got '$n')" >&2; exit 2 ;; esac
done

if [ -n "$preload" ] && [ ! -r "$preload" ]; then
    echo "loadtest: --preload: cannot read $preload" >&2; exit 2
fi
root=$(cd "$(dirname "$0")/.." && pwd)

if ! command -v wrk >/dev/null; then
    echo "loadtest: installing wrk (Debian package)" >&2
    sudo=""; [ "$(id -u)" -ne 0 ] && sudo=sudo
    $sudo apt-get update -qq && $sudo apt-get install -y -qq wrk >/dev/null
fi
command -v python3 >/dev/null || { echo "loadtest: python3 is needed to seed customers" >&2; exit 2; }

if [ -n "${CANDOR_BIN:-}" ]; then
    candor=$CANDOR_BIN
else
    echo "loadtest: building the release binary (cargo build --release --locked --bin candor)" >&2
    (cd "$root" && cargo build --release --locked --bin candor >&2)
    candor=$root/target/release/candor
fi

work=$(mktemp -d "${TMPDIR:-/tmp}/candor-loadtest.XXXXXX")
server_pid=""
pg_db=""
cleanup() {
    if [ -n "$server_pid" ] && kill -0 "$server_pid" 2>/dev/null; then
        kill "$server_pid" 2>/dev/null || true
        wait "$server_pid" 2>/dev/null || true
    fi
    if [ -n "$pg_db" ]; then
        psql "$postgres" -qAtc "DROP DATABASE IF EXISTS $pg_db WITH (FORCE)" >/dev/null 2>&1 || true
    fi
    if [ "$keep" = 1 ]; then echo "loadtest: installation kept in $work" >&2; else rm -rf "$work"; fi
}
trap cleanup EXIT

database_args=()
backend=SQLite
if [ -n "$postgres" ]; then
    command -v psql >/dev/null || { echo "loadtest: --postgres needs psql to create the database" >&2; exit 2; }
    pg_db="candor_loadtest_$$"
    psql "$postgres" -qAtc "CREATE DATABASE $pg_db" >/dev/null
    database_args=(--database "${postgres%/*}/$pg_db")
    backend=PostgreSQL
fi

"$candor" init --dir "$work" "${database_args[@]}" >"$work/init.txt"
config=$work/candor.toml
backend_token=$("$candor" token create --config "$config" --role shop_backend --description loadtest)
marketing_token=$("$candor" token create --config "$config" --role marketing_tool --description loadtest)
preloaded=0
if [ -n "$preload" ]; then
    echo "loadtest: importing $preload before the server starts" >&2
    "$candor" import subjects "$preload" --purpose order_fulfilment --report "$work/preload-report" \
        --config "$config" >"$work/preload.txt" 2>&1 \
        || { echo "loadtest: the preload import failed:" >&2; cat "$work/preload.txt" >&2; exit 1; }
    preloaded=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["outcome"]["created"])' \
        "$work/preload-report/report.json")
    echo "loadtest: $preloaded customers imported ($(grep -o '[0-9]* rows/s' "$work/preload.txt" || true))" >&2
fi

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
url=http://127.0.0.1:$port
"$candor" serve --config "$config" --listen "127.0.0.1:$port" >"$work/server.log" 2>&1 &
server_pid=$!
for _ in $(seq 1 100); do
    curl -fsS "$url/healthz" >/dev/null 2>&1 && break
    kill -0 "$server_pid" 2>/dev/null || { echo "loadtest: the server did not start:" >&2; cat "$work/server.log" >&2; exit 1; }
    sleep 0.1
done

# The server's memory, split: mapped files (almost all of it the binary's code, shared and
# clean: this kernel maps nearly the whole 20-30 MB text section; also SQLite's WAL index) and
# private memory (heap, stacks, SQLite caches), as "total MiB (files + private)".
rss_kib() { awk -v k="$1" '$1 == k":" {print $2}' "/proc/$server_pid/status"; }
rss_split() {
    awk -v t="$(rss_kib VmRSS)" -v f="$(rss_kib RssFile)" -v a="$(rss_kib RssAnon)" \
        'BEGIN { printf "%.1f MiB (files %.1f + private %.1f)", t / 1024, f / 1024, a / 1024 }'
}
fresh_rss=$(rss_split)

# Seed over the API: customers with an e-mail and a name (c<i>@example.com, so lookups can find
# them); the first 200 (or all, if fewer) grant marketing by e-mail, for the read under consent.
echo "loadtest: seeding $customers customers over HTTP" >&2
python3 - "$url" "$backend_token" "$customers" "$work" <<'PY'
import http.client, json, sys, threading
url, token, n, work = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
host, port = url.removeprefix("http://").split(":")
ids = [None] * n
consenting = min(n, 200)
def worker(k, step):
    c = http.client.HTTPConnection(host, int(port), timeout=60)
    h = {"Authorization": "Bearer " + token, "Candor-Purpose": "account", "Content-Type": "application/json"}
    for i in range(k, n, step):
        body = {"fields": {"email": f"c{i}@example.com", "full_name": f"Customer {i}"}}
        c.request("POST", "/v1/subjects", json.dumps(body), h)
        r = c.getresponse(); data = r.read()
        if r.status != 201:
            sys.exit(f"loadtest: seeding failed with {r.status}: {data[:300]!r}")
        ids[i] = json.loads(data)["id"]
        if i < consenting:
            body = {"changes": [{"purpose": "marketing", "channel": "email", "action": "grant"}],
                    "evidence": "loadtest sign-up form, marketing checkbox"}
            c.request("POST", f"/v1/subjects/{ids[i]}/consents", json.dumps(body), h)
            r = c.getresponse(); data = r.read()
            if r.status not in (200, 201):
                sys.exit(f"loadtest: consent seeding failed with {r.status}: {data[:300]!r}")
threads = [threading.Thread(target=worker, args=(k, 16)) for k in range(16)]
for t in threads: t.start()
for t in threads: t.join()
if any(i is None for i in ids):
    sys.exit("loadtest: seeding failed (see above)")
with open(f"{work}/ids.txt", "w") as f: f.write("\n".join(ids) + "\n")
with open(f"{work}/consenting.txt", "w") as f: f.write("\n".join(ids[:consenting]) + "\n")
PY

# One Lua script per scenario; every one ends with the same done() printing machine-readable
# figures (requests, seconds, p50/p99 in µs, non-2xx answers, socket errors).
common_lua='
local ids = {}
local function load(path) for line in io.lines(path) do ids[#ids + 1] = line end end
local n = 0
local thread_id = 0
local counter = 0
setup = function(thread) counter = counter + 1; thread:set("tid", counter) end
init = function(args) load(args[1]); thread_id = tid or 0; math.randomseed(thread_id * 7919) end
local function pick() n = n + 1; return ids[math.random(#ids)] end
local pause = tonumber(os.getenv("LOADTEST_DELAY_MS") or "")
if pause then delay = function() return pause end end
done = function(summary, latency, requests)
    local bad = summary.errors.status
    local sock = summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout
    io.write(string.format("RESULT %d %.6f %d %d %d %d\n", summary.requests, summary.duration / 1e6,
        latency:percentile(50), latency:percentile(99), bad, sock))
end
'
lua() { # name, body
    printf '%s\n%s\n' "$common_lua" "$2" >"$work/$1.lua"
}
lua healthz 'request = function() return wrk.format("GET", "/healthz") end'
lua read "request = function() return wrk.format(\"GET\", \"/v1/subjects/\" .. pick(), {[\"Authorization\"] = \"Bearer $backend_token\", [\"Candor-Purpose\"] = \"order_fulfilment\"}) end"
cp "$work/read.lua" "$work/read_paced.lua"
lua read_consent "request = function() return wrk.format(\"GET\", \"/v1/subjects/\" .. pick(), {[\"Authorization\"] = \"Bearer $marketing_token\", [\"Candor-Purpose\"] = \"marketing\"}) end"
lua lookup "request = function() n = n + 1; return wrk.format(\"GET\", \"/v1/subjects?email=c\" .. math.random(0, $customers - 1) .. \"%40example.com\", {[\"Authorization\"] = \"Bearer $backend_token\", [\"Candor-Purpose\"] = \"account\"}) end"
lua create "request = function() n = n + 1; return wrk.format(\"POST\", \"/v1/subjects\", {[\"Authorization\"] = \"Bearer $backend_token\", [\"Candor-Purpose\"] = \"account\", [\"Content-Type\"] = \"application/json\"}, '{\"fields\": {\"email\": \"w' .. os.time() .. '-' .. thread_id .. '-' .. n .. '@example.com\", \"full_name\": \"Load Test\"}}') end"
lua correction "request = function() return wrk.format(\"PATCH\", \"/v1/subjects/\" .. pick(), {[\"Authorization\"] = \"Bearer $backend_token\", [\"Candor-Purpose\"] = \"account\", [\"Content-Type\"] = \"application/json\"}, '{\"fields\": {\"full_name\": \"Corrected ' .. n .. '\"}}') end"
lua event "request = function() return wrk.format(\"POST\", \"/v1/subjects/\" .. pick() .. \"/events\", {[\"Authorization\"] = \"Bearer $backend_token\", [\"Candor-Purpose\"] = \"order_fulfilment\", [\"Content-Type\"] = \"application/json\"}, '{\"type\": \"purchase\", \"data\": {\"item\": \"Notebook\", \"price_eur\": 12.5}}') end"
lua consent "request = function() local id = pick(); local a = (n % 2 == 0) and 'grant' or 'withdraw'; return wrk.format(\"POST\", \"/v1/subjects/\" .. id .. \"/consents\", {[\"Authorization\"] = \"Bearer $backend_token\", [\"Candor-Purpose\"] = \"account\", [\"Content-Type\"] = \"application/json\"}, '{\"changes\": [{\"purpose\": \"analytics\", \"action\": \"' .. a .. '\"}], \"evidence\": \"loadtest settings form\"}') end"

ticks=$(getconf CLK_TCK)
cpu_ticks() { awk '{print $14 + $15}' "/proc/$server_pid/stat"; }
idle_rss=$(rss_split)

# run NAME IDS_FILE [DELAY_MS] -> "rate p50_us p99_us cpu_us_per_request"
run() {
    local name=$1 ids=$2 delay=${3:-} before after out
    before=$(cpu_ticks)
    out=$(LOADTEST_DELAY_MS=$delay wrk -t2 -c"$clients" -d"${seconds}s" --latency -s "$work/$name.lua" "$url" -- "$ids" 2>&1) \
        || { echo "loadtest: wrk failed for $name:" >&2; echo "$out" >&2; exit 1; }
    after=$(cpu_ticks)
    echo "$out" >>"$work/wrk-$name.txt"
    local result
    result=$(echo "$out" | awk '$1 == "RESULT"')
    [ -n "$result" ] || { echo "loadtest: no result from wrk for $name:" >&2; echo "$out" >&2; exit 1; }
    read -r _ requests duration p50 p99 bad sock <<<"$result"
    if [ "$bad" -gt 0 ] || [ "$sock" -gt 0 ]; then
        echo "loadtest: $name: $bad answers were not 2xx/3xx and $sock socket errors (see $work/server.log)" >&2
        keep=1
        exit 1
    fi
    awk -v r="$requests" -v d="$duration" -v a="$p50" -v b="$p99" -v t0="$before" -v t1="$after" -v hz="$ticks" \
        'BEGIN { printf "%.1f %d %d %.0f\n", r / d, a, b, (t1 - t0) / hz * 1e6 / (r > 0 ? r : 1) }'
}

median() { sort -n | awk '{ v[NR] = $1 } END { if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }

scenarios="healthz read read_paced read_consent lookup create correction event consent"
wanted() { [ -z "$only" ] || [[ ",$only," == *",$1,"* ]]; }
declare -A label=(
    [healthz]='GET /healthz (pings the database)'
    [read]='GET /v1/subjects/{id} (audited read, order_fulfilment)'
    [read_paced]='  the same at half the peak read rate'
    [read_consent]='GET /v1/subjects/{id} under consent (marketing)'
    [lookup]='GET /v1/subjects?email= (lookup, logged)'
    [create]='POST /v1/subjects (create: e-mail + name)'
    [correction]='PATCH /v1/subjects/{id} (correction)'
    [event]='POST /v1/subjects/{id}/events (event)'
    [consent]='POST /v1/subjects/{id}/consents (consent change)'
)
declare -A results
for r in $(seq 1 "$runs"); do
    echo "loadtest: run $r of $runs" >&2
    for s in $scenarios; do
        wanted "$s" || continue
        case "$s" in
            read_consent) ids=$work/consenting.txt ;;
            *) ids=$work/ids.txt ;;
        esac
        delay=""
        if [ "$s" = read_paced ]; then
            peak=$(echo "${results[read]:-}" | awk -v r="$r" 'NR == r {print $1}')
            read_p50=$(echo "${results[read]:-}" | awk -v r="$r" 'NR == r {print $2}')
            [ -n "$peak" ] || { echo "loadtest: read_paced needs the read scenario in the same run" >&2; exit 2; }
            # Each connection's cycle (answer + pause) should last clients / (peak / 2) seconds;
            # at half the load an answer takes less than read's p50, so the pause is the cycle
            # less that (erring towards slightly more than half the peak).
            delay=$(awk -v p="$peak" -v c="$clients" -v l="$read_p50" \
                'BEGIN { d = c / (p / 2) * 1000 - l / 1000; printf "%d", (d > 1 ? d : 1) }')
        fi
        line=$(run "$s" "$ids" "$delay")
        echo "  $s: $line (requests/s p50_us p99_us cpu_us)" >&2
        results[$s]+="$line"$'\n'
    done
done
peak_rss=$(rss_kib VmHWM)

field() { echo -n "${results[$1]}" | awk -v f="$2" '{print $f}' | median; }
floor=$( [ -n "${results[healthz]:-}" ] && field healthz 1 || echo 0)
echo
echo "Candor $("$candor" --version 2>/dev/null | awk '{print $2}') on $backend, $customers customers$([ "$preloaded" -gt 0 ] && echo " (and $preloaded imported before)"); wrk -t2 -c$clients -d${seconds}s --latency, median of $runs run(s); $(nproc) cores, load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
printf '| %-58s | %12s | %9s | %9s | %17s | %16s |\n' scenario throughput p50 p99 'share of /healthz' 'server CPU/req'
printf '|%s|%s:|%s:|%s:|%s:|%s:|\n' "$(printf -- '-%.0s' {1..60})" "$(printf -- '-%.0s' {1..13})" "$(printf -- '-%.0s' {1..10})" "$(printf -- '-%.0s' {1..10})" "$(printf -- '-%.0s' {1..18})" "$(printf -- '-%.0s' {1..17})"
for s in $scenarios; do
    [ -n "${results[$s]:-}" ] || continue
    rate=$(field "$s" 1); p50=$(field "$s" 2); p99=$(field "$s" 3); cpu=$(field "$s" 4)
    share=$(awk -v r="$rate" -v f="$floor" 'BEGIN { if (f > 0) printf "%.0f%%", 100 * r / f; else print "-" }')
    printf '| %-58s | %10.0f/s | %6.2f ms | %6.2f ms | %17s | %13.0f µs |\n' "${label[$s]}" "$rate" \
        "$(awk -v v="$p50" 'BEGIN{print v/1000}')" "$(awk -v v="$p99" 'BEGIN{print v/1000}')" "$share" "$cpu"
done
echo "server RSS: $fresh_rss at start; $idle_rss idle after seeding; $(awk -v k="$peak_rss" 'BEGIN{printf "%.1f", k/1024}') MiB peak"
