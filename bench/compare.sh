#!/usr/bin/env bash
# Side by side: lastfm-monitor versus Debian's prometheus-blackbox-exporter, both probing the same
# local nginx, which serves a 1.7 KB artist.getInfo JSON at /2.0/ (POST and GET), under the same
# load (the targets and past results are in docs/PERFORMANCE.md). Prints, per exporter: start-up
# to ready, idle RSS, CPU time per completed probe under `wrk -c8` on /probe, RSS at the end of
# that load and its peak; the ratios; and, for lastfm-monitor alone, CPU per scheduled probe
# (100 probes every second; first runs spread over the second or all at once, with fresh or
# reused connections) and /metrics throughput.
# The /probe load runs ROUNDS times per exporter, alternating between them so both see the same
# machine: as fast as each answers, then paced by a wrk script at the same rate for both.
# Blackbox has no rate limit; ours holds every target to its politeness budget, which the config
# caps at 1000/s and burst 100 (a guard for Last.fm, not a knob to lift for a benchmark). So that
# the unpaced load measures how fast ours answers rather than that cap, ours gets LOAD_TARGETS
# targets on the same nginx, each at the cap, and wrk's requests go round them in turn: a budget
# of LOAD_TARGETS × 1000/s, above the rate either exporter reaches on this machine (the printed
# "not 2xx" count shows any run the budget refused).
#
# Installs nothing. Needs nginx, prometheus-blackbox-exporter, wrk and curl (on Debian:
# `apt-get install nginx prometheus-blackbox-exporter wrk curl`; openssl, when present, makes a
# throw-away certificate so the shipped config's https target is served over TLS) and a release
# build of ours
# (`cargo build --release --locked`, or LASTFM_MONITOR_BIN=/path/to/lastfm-monitor).
#
# CPU is process CPU time (utime + stime of /proc/PID/stat, every thread), not wall time, so other
# work on the machine does not count; a probe counts only when nginx logged a 200 for it (a 429 of
# our politeness gate, a 503, a failed probe are not probes). Everything listens on 127.0.0.1 and
# every load is bounded by its duration. Run it twice: the numbers move with the machine's load,
# which is printed.
#
# Usage: bench/compare.sh   (tunable: DURATION=10 ROUNDS=2 CONNECTIONS=8 WRK_THREADS=2 IDLE_WAIT=2
#                            SETTLE=35 SCHED_PROBES=100 SCHED_DURATION=20 SCRAPE_CONNECTIONS=64
#                            PACE_MS=9 LOAD_TARGETS=8)
# Takes about five minutes.
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
repo="$(cd "$here/.." && pwd)"
DURATION="${DURATION:-10}"
CONNECTIONS="${CONNECTIONS:-8}"
WRK_THREADS="${WRK_THREADS:-2}"
IDLE_WAIT="${IDLE_WAIT:-2}"
ROUNDS="${ROUNDS:-2}"
SCHED_PROBES="${SCHED_PROBES:-100}"
SCHED_DURATION="${SCHED_DURATION:-20}"
SCRAPE_CONNECTIONS="${SCRAPE_CONNECTIONS:-64}"
SETTLE="${SETTLE:-35}"
LOAD_TARGETS="${LOAD_TARGETS:-8}"
ours_bin="${LASTFM_MONITOR_BIN:-$repo/target/release/lastfm-monitor}"
bbe_bin="$(command -v prometheus-blackbox-exporter || true)"
nginx_bin="$(command -v nginx || true)"
[ -z "$nginx_bin" ] && [ -x /usr/sbin/nginx ] && nginx_bin=/usr/sbin/nginx

missing=()
[ -x "$ours_bin" ] || missing+=("lastfm-monitor release binary at $ours_bin (cargo build --release)")
[ -n "$bbe_bin" ] || missing+=("prometheus-blackbox-exporter")
[ -n "$nginx_bin" ] || missing+=("nginx")
command -v wrk >/dev/null || missing+=("wrk")
command -v curl >/dev/null || missing+=("curl")
if [ "${#missing[@]}" -gt 0 ]; then
    printf 'compare.sh: missing %s\n' "${missing[@]}" >&2
    exit 2
fi

tmp="$(mktemp -d /tmp/lastfm-compare.XXXXXX)"
pids=()
cleanup() {
    for pid in "${pids[@]}"; do
        kill "$pid" 2>/dev/null || true
    done
    for pid in "${pids[@]}"; do
        wait "$pid" 2>/dev/null || true
    done
    rm -rf "$tmp"
}
trap cleanup EXIT

# Stops one process this script started.
stop() {
    kill "$1" 2>/dev/null || true
    wait "$1" 2>/dev/null || true
}

# A free TCP port on 127.0.0.1, from a high range, not listened on by anything.
taken_ports=""
free_port() {
    local port
    for _ in $(seq 1 200); do
        port=$((20000 + RANDOM % 20000))
        case " $taken_ports " in *" $port "*) continue ;; esac
        if ! ss -Hltn "sport = :$port" | grep -q .; then
            taken_ports="$taken_ports $port"
            echo "$port"
            return
        fi
    done
    echo "compare.sh: no free port found" >&2
    exit 1
}

# CPU time of a process in clock ticks: "utime stime" (all threads, live and exited).
cpu_ticks() {
    local stat
    stat="$(cat "/proc/$1/stat")"
    stat="${stat##*) }" # the fields after "comm", which may hold spaces
    # shellcheck disable=SC2086
    set -- $stat
    echo "${12} ${13}"
}
mib() { awk -v k="$1" 'BEGIN { printf "%.1f", k / 1024 }'; }
status_kib() { awk -v k="$2" '$1 == k":" { print $2 }' "/proc/$1/status"; }
ticks_per_second="$(getconf CLK_TCK)"
now_ms() { echo $(($(date +%s%N) / 1000000)); }
# Microseconds per unit: us_per TICKS UNITS
us_per() { awk -v t="$1" -v n="$2" -v hz="$ticks_per_second" 'BEGIN { if (n > 0) printf "%.0f", t * 1e6 / hz / n; else print "n/a" }'; }

# Waits until URL answers 200; prints the milliseconds since $2 (epoch ms).
wait_ready() {
    local url="$1" since="$2"
    for _ in $(seq 1 2000); do
        if [ "$(curl -s -o /dev/null -w '%{http_code}' --max-time 1 "$url" || true)" = 200 ]; then
            echo $(($(now_ms) - since))
            return
        fi
        sleep 0.002
    done
    echo "compare.sh: $url never became ready" >&2
    exit 1
}

nginx_port="$(free_port)"
tls_port="$(free_port)"
bbe_port="$(free_port)"
ours_port="$(free_port)"
shipped_port="$(free_port)"
upstream_url="http://127.0.0.1:$nginx_port/2.0/"
api_key="0123456789abcdef0123456789abcdef"

# ---- TLS for the shipped config's https target: a throw-away CA and a certificate for
#      127.0.0.1; ours trusts the system bundle plus that CA (SSL_CERT_FILE), nothing is installed.
tls=no
if command -v openssl >/dev/null; then
    (
        cd "$tmp"
        openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
            -keyout ca.key -out ca.pem -days 1 -subj "/CN=compare.sh throw-away CA"
        openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
            -keyout leaf.key -out leaf.csr -subj "/CN=127.0.0.1"
        printf 'subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n' >leaf.ext
        openssl x509 -req -in leaf.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 1 \
            -extfile leaf.ext -out leaf.pem
        cat /etc/ssl/certs/ca-certificates.crt ca.pem >bundle.pem 2>/dev/null || cp ca.pem bundle.pem
    ) >/dev/null 2>&1 && tls=yes
fi
tls_server=""
if [ "$tls" = yes ]; then
    tls_server="server {
        listen 127.0.0.1:$tls_port ssl;
        ssl_certificate $tmp/leaf.pem;
        ssl_certificate_key $tmp/leaf.key;
        root $tmp/www;
        location /2.0/ { default_type application/json; index index.json; error_page 405 =200 \$uri; }
    }"
fi

# ---- nginx: one process; answers the JSON to POST and GET on /2.0/; logs status and agent.
mkdir -p "$tmp/www/2.0" "$tmp/nginx"
cp "$here/artist.getInfo.json" "$tmp/www/2.0/index.json"
cat >"$tmp/nginx.conf" <<EOF
daemon off;
master_process off;
worker_processes 1;
pid $tmp/nginx/nginx.pid;
error_log $tmp/nginx/error.log warn;
events { worker_connections 4096; }
http {
    client_body_temp_path $tmp/nginx/body;
    proxy_temp_path $tmp/nginx/proxy;
    fastcgi_temp_path $tmp/nginx/fastcgi;
    uwsgi_temp_path $tmp/nginx/uwsgi;
    scgi_temp_path $tmp/nginx/scgi;
    log_format probe '\$status \$request_method "\$http_user_agent"';
    access_log $tmp/nginx/access.log probe;
    server {
        listen 127.0.0.1:$nginx_port;
        root $tmp/www;
        location /2.0/ {
            default_type application/json;
            index index.json;
            # A static file answers 405 to POST: serve the same body with 200 instead.
            error_page 405 =200 \$uri;
        }
    }
    $tls_server
}
EOF
"$nginx_bin" -p "$tmp/nginx" -c "$tmp/nginx.conf" 2>"$tmp/nginx.err" &
nginx_pid="$!"
pids+=("$nginx_pid")
for _ in $(seq 1 500); do
    ss -Hltn "sport = :$nginx_port" | grep -q . && break
    if ! kill -0 "$nginx_pid" 2>/dev/null; then
        # Another process took the port between the check and the bind: run again.
        echo "compare.sh: nginx did not start: $(tail -n 1 "$tmp/nginx.err")" >&2
        exit 1
    fi
    sleep 0.01
done
body_bytes="$(curl -s -X POST -d 'method=artist.getInfo' "$upstream_url" | wc -c)"
if [ "$body_bytes" -lt 1000 ]; then
    echo "compare.sh: nginx does not serve the JSON body to POST ($body_bytes bytes)" >&2
    exit 1
fi
access_log="$tmp/nginx/access.log"
log_lines() { wc -l <"$access_log"; }
# nginx 200s logged after line $1 whose User-Agent contains $2.
upstream_200s() { tail -n +"$(($1 + 1))" "$access_log" | grep -c "^200 .*$2" || true; }

# ---- Configurations: both exporters send the same request (POST, form body) to the same nginx.
form="artist=Cher&method=artist.getInfo&api_key=$api_key&format=json"
cat >"$tmp/blackbox.yml" <<EOF
modules:
  lastfm_post:
    prober: http
    timeout: 5s
    http:
      method: POST
      valid_status_codes: [200]
      headers:
        Content-Type: application/x-www-form-urlencoded
      body: "$form"
EOF
# One target on this nginx at the config's largest budget; $1 names it.
target_block() {
    cat <<EOF
[[targets]]
name = "$1"
base_url = "$upstream_url"
api_key = { env = "LASTFM_API_KEY" }
max_requests_per_second = 1000
burst = 100
EOF
}
{
    printf '[web]\nlisten_address = "127.0.0.1:%s"\n\n[defaults]\ninterval = "1h"\ntimeout = "5s"\nstartup_jitter = "0s"\n' "$ours_port"
    for i in $(seq 1 "$LOAD_TARGETS"); do
        printf '\n'
        target_block "nginx$i"
        printf '\n[[targets.probes]]\nmethod = "artist.getInfo"\nparams = { artist = "Cher" }\nchecks = [{ pointer = "/artist/name", non_empty = true }]\n'
    done
} >"$tmp/load.toml"
# Scheduled: SCHED_PROBES probes every second, budget raised, in four shapes: first runs spread
# over the second (the default start-up jitter, capped at the interval) or all at the same moment
# (no jitter), each with a fresh connection per run (the default) or reusing them
# (`reuse_connections = true`). $1 is the jitter, $2 true or false.
scheduled_config() {
    printf '[web]\nlisten_address = "127.0.0.1:%s"\n\n[defaults]\ninterval = "1s"\ntimeout = "900ms"\n' "$ours_port"
    if [ "$1" = none ]; then printf 'startup_jitter = "0s"\n'; fi
    printf '\n'
    target_block nginx
    printf 'reuse_connections = %s\n' "$2"
    for i in $(seq 1 "$SCHED_PROBES"); do
        printf '\n[[targets.probes]]\nname = "artist.getInfo.%s"\nmethod = "artist.getInfo"\nparams = { artist = "Cher" }\nchecks = [{ pointer = "/artist/name", non_empty = true }]\n' "$i"
    done
}
# The shipped config, unchanged but for the upstream (this nginx, over TLS when openssl made a
# certificate, instead of Last.fm), so the idle measurement runs the shipped probe set, TLS
# included, without leaving this machine.
shipped_url="$upstream_url"
[ "$tls" = yes ] && shipped_url="https://127.0.0.1:$tls_port/2.0/"
sed -e "s#^base_url = \"https://ws.audioscrobbler.com/2.0/\"#base_url = \"$shipped_url\"#" \
    -e "s#^url = \"https://www.google.com/generate_204\"#url = \"$upstream_url\"#" \
    "$repo/config.toml" >"$tmp/shipped.toml"
grep -q "base_url = \"$shipped_url\"" "$tmp/shipped.toml"
# The shipped reference is a public endpoint: the bench checks this machine's nginx instead.
if grep -q "generate_204" "$tmp/shipped.toml"; then echo "the shipped reference was not replaced" >&2; exit 1; fi

# The same load at the same rate for both: each connection waits PACE_MS between requests, so
# 8 connections ask for about 1000 × 8 / PACE_MS probes a second, below our 1000/s budget.
PACE_MS="${PACE_MS:-9}"
printf 'function delay() return %s end\n' "$PACE_MS" >"$tmp/pace.lua"
# The unpaced load on ours: each request names the next of the LOAD_TARGETS targets.
cat >"$tmp/rotate.lua" <<EOF
local n = 0
function request()
    n = n % $LOAD_TARGETS + 1
    return wrk.format("GET", "/probe?target=nginx" .. n .. "&probe=artist.getInfo")
end
EOF

# ---- One /probe load on one exporter; KEY names the tally it adds to; a 5th argument paces it
#      (a wrk script). Tallies, per KEY: user and system CPU ticks, probes (nginx 200s), answers
#      (what wrk counted), not2xx (429, 503… among them), seconds.
declare -A user sys probes answers not2xx seconds
probe_load() {
    local key="$1" pid="$2" probe_url="$3" agent="$4" script=()
    [ -n "${5:-}" ] && script=(-s "$5")
    for _ in 1 2 3 4 5; do curl -s -o /dev/null "$probe_url"; done # warm-up, not counted
    local lines0 out u0 s0 u1 s1 bad
    lines0="$(log_lines)"
    read -r u0 s0 <<<"$(cpu_ticks "$pid")"
    out="$(wrk -t"$WRK_THREADS" -c"$CONNECTIONS" -d"${DURATION}s" --timeout 5s "${script[@]}" "$probe_url")"
    read -r u1 s1 <<<"$(cpu_ticks "$pid")"
    bad="$(awk '/Non-2xx or 3xx responses:/ { print $NF }' <<<"$out")"
    user[$key]=$((${user[$key]:-0} + u1 - u0))
    sys[$key]=$((${sys[$key]:-0} + s1 - s0))
    probes[$key]=$((${probes[$key]:-0} + $(upstream_200s "$lines0" "$agent")))
    answers[$key]=$((${answers[$key]:-0} + $(awk '/requests in/ { print $1 }' <<<"$out")))
    not2xx[$key]=$((${not2xx[$key]:-0} + ${bad:-0}))
    seconds[$key]=$((${seconds[$key]:-0} + DURATION))
}
cpu_of() { us_per $((user[$1] + sys[$1])) "${probes[$1]}"; }
split_of() { echo "$(us_per "${user[$1]}" "${probes[$1]}") / $(us_per "${sys[$1]}" "${probes[$1]}")"; }
rate_of() { echo $((probes[$1] / seconds[$1])); }

load_before="$(cut -d' ' -f1-3 /proc/loadavg)"

# ---- Idle: blackbox_exporter, and lastfm-monitor with the shipped config, side by side. Each is
#      scraped once (as Prometheus would), then RSS is read IDLE_WAIT later and again SETTLE
#      after ready, when every shipped probe has run once (their start-up jitter is 30 s).
since="$(now_ms)"
"$bbe_bin" --config.file="$tmp/blackbox.yml" --web.listen-address="127.0.0.1:$bbe_port" \
    --log.level=warn 2>"$tmp/blackbox.log" &
bbe_pid="$!"
pids+=("$bbe_pid")
b_ready="$(wait_ready "http://127.0.0.1:$bbe_port/-/ready" "$since")"
curl -s -o /dev/null "http://127.0.0.1:$bbe_port/metrics"
since="$(now_ms)"
SSL_CERT_FILE="$tmp/bundle.pem" LASTFM_API_KEY="$api_key" "$ours_bin" \
    --config.file "$tmp/shipped.toml" --web.listen-address "127.0.0.1:$shipped_port" \
    --log.level warn 2>"$tmp/ours-shipped.log" &
shipped_pid="$!"
pids+=("$shipped_pid")
o_ready="$(wait_ready "http://127.0.0.1:$shipped_port/-/ready" "$since")"
curl -s -o /dev/null "http://127.0.0.1:$shipped_port/metrics"
sleep "$IDLE_WAIT"
b_idle="$(status_kib "$bbe_pid" VmRSS)"
o_idle="$(status_kib "$shipped_pid" VmRSS)"
sleep "$((SETTLE - IDLE_WAIT))"
b_settled="$(status_kib "$bbe_pid" VmRSS)"
o_settled="$(status_kib "$shipped_pid" VmRSS)"
o_settled_anon="$(status_kib "$shipped_pid" RssAnon)"
o_settled_file="$(status_kib "$shipped_pid" RssFile)"
metrics_url="http://127.0.0.1:$shipped_port/metrics"
shipped_runs="$(curl -s "$metrics_url" | awk '/^lastfm_probe_runs_total\{/ { s += $2 } END { print s + 0 }')"
shipped_outcomes="$(curl -s "$metrics_url" |
    awk '/^lastfm_probe_runs_total\{/ && $2 > 0 { sub(/.*outcome="/, ""); sub(/".*/, ""); n[$0]++ }
         END { for (o in n) { printf "%s%s %d", sep, o, n[o]; sep = ", " } }')"

# ---- /metrics throughput of the shipped config's daemon.
series="$(curl -s "$metrics_url" | grep -vc '^#')"
metrics_bytes="$(curl -s "$metrics_url" | wc -c)"
read -r u0 s0 <<<"$(cpu_ticks "$shipped_pid")"
out="$(wrk -t"$WRK_THREADS" -c"$SCRAPE_CONNECTIONS" -d"${DURATION}s" --timeout 5s "$metrics_url")"
read -r u1 s1 <<<"$(cpu_ticks "$shipped_pid")"
scrapes="$(awk '/requests in/ { print $1 }' <<<"$out")"
scrape_non200="$(awk '/Non-2xx or 3xx responses:/ { print $NF }' <<<"$out")"
scrape_non200="${scrape_non200:-0}"
scrape_rate="$(awk '/Requests\/sec/ { printf "%.0f", $2 }' <<<"$out")"
scrape_p99="$(wrk -t1 -c1 -d2s --latency "$metrics_url" | awk '$1 == "99%" { print $2 }')"
scrape_cpu="$(us_per $((u1 - u0 + s1 - s0)) $((scrapes - scrape_non200)))"
scrape_rss="$(status_kib "$shipped_pid" VmRSS)"
stop "$shipped_pid"

# ---- lastfm-monitor for the /probe load (LOAD_TARGETS targets at 1000/s, burst 100, each).
LASTFM_API_KEY="$api_key" "$ours_bin" --config.file "$tmp/load.toml" --log.level warn \
    2>"$tmp/ours-load.log" &
ours_pid="$!"
pids+=("$ours_pid")
wait_ready "http://127.0.0.1:$ours_port/-/ready" "$(now_ms)" >/dev/null

# ---- The /probe loads, alternating between the two exporters so that both see the same
#      machine: ROUNDS × (blackbox, ours) unpaced, then paced.
bbe_probe="http://127.0.0.1:$bbe_port/probe?target=$upstream_url&module=lastfm_post"
ours_probe="http://127.0.0.1:$ours_port/probe?target=nginx1&probe=artist.getInfo"
for _ in $(seq 1 "$ROUNDS"); do
    probe_load b "$bbe_pid" "$bbe_probe" "Blackbox"
    probe_load o "$ours_pid" "$ours_probe" "lastfm-monitor" "$tmp/rotate.lua"
done
for _ in $(seq 1 "$ROUNDS"); do
    probe_load bp "$bbe_pid" "$bbe_probe" "Blackbox" "$tmp/pace.lua"
    probe_load op "$ours_pid" "$ours_probe" "lastfm-monitor" "$tmp/pace.lua"
done
b_rss="$(status_kib "$bbe_pid" VmRSS)" b_hwm="$(status_kib "$bbe_pid" VmHWM)"
o_rss="$(status_kib "$ours_pid" VmRSS)" o_hwm="$(status_kib "$ours_pid" VmHWM)"
o_verdict="$(curl -s "$ours_probe" |
    awk '/^lastfm_probe_outcome.* 1$/ { sub(/.*outcome="/, ""); sub(/".*/, ""); print }')"
stop "$bbe_pid"
stop "$ours_pid"

# ---- lastfm-monitor, scheduled: SCHED_PROBES probes every second, in each shape.
# Sets, per shape: sched_cpu, sched_split, sched_runs, sched_success, sched_mem.
declare -A sched_cpu sched_split sched_runs sched_success sched_mem
shapes=("spread fresh" "spread reused" "aligned fresh" "aligned reused")
for shape in "${shapes[@]}"; do
    read -r spread connections <<<"$shape"
    jitter=default
    [ "$spread" = aligned ] && jitter=none
    reuse=false
    [ "$connections" = reused ] && reuse=true
    scheduled_config "$jitter" "$reuse" >"$tmp/scheduled.toml"
    LASTFM_API_KEY="$api_key" "$ours_bin" --config.file "$tmp/scheduled.toml" --log.level warn \
        2>"$tmp/ours-scheduled.log" &
    sched_pid="$!"
    pids+=("$sched_pid")
    wait_ready "http://127.0.0.1:$ours_port/-/ready" "$(now_ms)" >/dev/null
    sleep 3 # every probe has run at least once
    lines0="$(log_lines)"
    read -r u0 s0 <<<"$(cpu_ticks "$sched_pid")"
    sleep "$SCHED_DURATION"
    read -r u1 s1 <<<"$(cpu_ticks "$sched_pid")"
    runs="$(upstream_200s "$lines0" "lastfm-monitor")"
    sched_runs[$shape]="$runs"
    sched_cpu[$shape]="$(us_per $((u1 - u0 + s1 - s0)) "$runs")"
    sched_split[$shape]="$(us_per $((u1 - u0)) "$runs") / $(us_per $((s1 - s0)) "$runs")"
    sched_mem[$shape]="$(mib "$(status_kib "$sched_pid" VmRSS)"), $(mib "$(status_kib "$sched_pid" VmHWM)")"
    sched_success[$shape]="$(curl -s "http://127.0.0.1:$ours_port/metrics" |
        awk '/^lastfm_probe_success\{/ { n++; s += $2 } END { printf "%d of %d", s, n }')"
    stop "$sched_pid"
done

load_after="$(cut -d' ' -f1-3 /proc/loadavg)"

ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "n/a" }'; }
row() { printf '%-40s %16s %16s %7s\n' "$@"; }
stripped="$(strip -o "$tmp/stripped" "$ours_bin" 2>/dev/null && stat -c %s "$tmp/stripped" || echo n/a)"

echo "lastfm-monitor $("$ours_bin" --version 2>&1 | awk 'NR == 1 { print $NF }') vs prometheus-blackbox-exporter $("$bbe_bin" --version 2>&1 | awk 'NR == 1 { print $3 }')"
echo "machine: $(nproc) CPUs, $(awk -F': ' '/model name/ { print $2; exit }' /proc/cpuinfo), Linux $(uname -r)"
echo "upstream: nginx $("$nginx_bin" -v 2>&1 | sed 's#.*/##'), ${body_bytes}-byte JSON at $upstream_url"
echo "load average before: $load_before; after: $load_after"
echo
row "/probe, wrk -t$WRK_THREADS -c$CONNECTIONS, ${ROUNDS}x${DURATION}s" "blackbox" "lastfm-monitor" "ratio"
row "CPU per probe (us)" "$(cpu_of b)" "$(cpu_of o)" "$(ratio "$(cpu_of o)" "$(cpu_of b)")"
row "  user / system (us)" "$(split_of b)" "$(split_of o)" ""
row "probes (nginx 200s), per second" "${probes[b]}, $(rate_of b)" "${probes[o]}, $(rate_of o)" ""
row "answers (wrk), of which not 2xx" "${answers[b]}, ${not2xx[b]}" "${answers[o]}, ${not2xx[o]}" ""
row "same rate: wrk script, ${PACE_MS} ms apart" "" "" ""
row "  CPU per probe (us)" "$(cpu_of bp)" "$(cpu_of op)" "$(ratio "$(cpu_of op)" "$(cpu_of bp)")"
row "  user / system (us)" "$(split_of bp)" "$(split_of op)" ""
row "  probes per second; not 2xx" "$(rate_of bp); ${not2xx[bp]}" "$(rate_of op); ${not2xx[op]}" ""
row "RSS after the loads (MiB)" "$(mib "$b_rss")" "$(mib "$o_rss")" "$(ratio "$o_rss" "$b_rss")"
row "peak RSS, VmHWM (MiB)" "$(mib "$b_hwm")" "$(mib "$o_hwm")" "$(ratio "$o_hwm" "$b_hwm")"
row "idle RSS, ${SETTLE} s after ready (MiB)" "$(mib "$b_settled")" "$(mib "$o_settled")" "$(ratio "$o_settled" "$b_settled")"
row "  ${IDLE_WAIT} s after ready (MiB)" "$(mib "$b_idle")" "$(mib "$o_idle")" "$(ratio "$o_idle" "$b_idle")"
row "start-up to ready (ms)" "$b_ready" "$o_ready" ""
echo
echo "lastfm-monitor alone"
row "  idle RSS, anon + file (MiB)" "" "$(mib "$o_settled_anon") + $(mib "$o_settled_file")" ""
row "  shipped runs by then" "" "$shipped_runs" ""
row "    their outcomes (probes)" "" "$shipped_outcomes" ""
row "  /probe verdict during the load" "" "$o_verdict" ""
row "  scheduled, $SCHED_PROBES probes every 1 s, ${SCHED_DURATION} s:" "" "" ""
for shape in "${shapes[@]}"; do
    row "    $shape: CPU per run (us)" "" "${sched_cpu[$shape]}" ""
    row "      user / system (us)" "" "${sched_split[$shape]}" ""
    row "      runs; probes succeeding" "" "${sched_runs[$shape]}; ${sched_success[$shape]}" ""
    row "      RSS at the end, peak (MiB)" "" "${sched_mem[$shape]}" ""
done
row "  /metrics, wrk -c$SCRAPE_CONNECTIONS: scrapes/s" "" "$scrape_rate" ""
row "    CPU per scrape (us)" "" "$scrape_cpu" ""
row "    series, bytes; not 2xx" "" "$series, $metrics_bytes; $scrape_non200" ""
row "    p99 latency of lone scrapes" "" "$scrape_p99" ""
row "    RSS after (MiB)" "" "$(mib "$scrape_rss")" ""
row "  binary size, stripped (bytes)" "" "$(stat -c %s "$ours_bin"), $stripped" ""
echo
echo "idle: both scraped once after ready; ours runs the shipped config.toml with base_url"
if [ "$tls" = yes ]; then
    echo "  https://127.0.0.1:$tls_port/2.0/ (this nginx, over TLS)"
else
    echo "  $upstream_url (no openssl: plain HTTP)"
fi
echo "targets: CPU/probe <= 0.25x blackbox; idle RSS <= 0.5x; RSS under load <= 16 MiB;"
echo "scheduled <= 50 us/run; >= 10,000 scrapes/s; start-up <= 100 ms"
