#!/usr/bin/env bash
# The packaged unit under a real systemd: boots a Debian minbase container with systemd-nspawn,
# installs the .deb in it and drives lastfm-monitor.service with systemctl and journalctl
# (docs/PACKAGING.md, "The unit under a real systemd"). Run from anywhere, as root:
#   bash systemd/nspawn-check.sh [path/to/lastfm-monitor_*.deb]
# Without an argument it builds the package with packaging/build-deb.sh.
# Needs root, systemd-nspawn (systemd-container) and debootstrap (both installed when missing),
# and Debian's mirror (the first deb.debian.org-style URI in apt's sources, or $MIRROR) the first
# time for each suite: the minbase rootfs is cached as a tarball in /var/cache/lastfm-monitor-ci/
# (keyed by suite and package list) and re-used. Bounded: every wait has a timeout; a run takes
# about 40 s with the cached rootfs, 1.5 to 2.5 minutes without; CI wraps it in `timeout 480`.
#
# What it checks, in order, with the real systemd 252 of the container:
#   1. the package installs (dpkg -i; its postinst runs daemon-reload), leaves the unit disabled
#      and inactive, and its /etc/lastfm-monitor/config.toml validates;
#   2. without /etc/lastfm-monitor/api_key the unit fails to start (243/CREDENTIALS);
#   3. with the key and the packaged config unchanged it reaches active (running);
#   4. with a config pointing at the built-in simulator (a second, transient unit) over
#      http://localhost:18080/2.0/: start returns after READY=1, /metrics shows successful runs;
#   5. watchdog (a drop-in lowers WatchdogSec to 4s): alive for > 2 x WatchdogSec; SIGSTOP of the
#      main process -> "Watchdog timeout" in the journal, Restart= brings a new MainPID;
#   6. reload: a new probe appears in /metrics; a broken config is refused with its error in the
#      journal while the old one keeps running (same MainPID, still probing);
#   7. the API key arrives only through LoadCredential (not in Environment=, the command line,
#      the process environment or the journal; the simulator accepts only that key);
#   8. the StateDirectory state file exists and survives a restart (the restarted daemon says it
#      restored it); `systemctl stop` ends cleanly (exit 0) within TimeoutStopSec;
#   9. no SIGSYS and no EPERM ("Operation not permitted") in the journal, and the same workload
#      once more with SystemCallErrorNumber=kill, so a refused syscall cannot pass unnoticed;
#  10. `systemd-analyze security lastfm-monitor` (online, the shipped unit without the test
#      drop-ins) prints an exposure <= 1.5;
#  11. an upgrade (dpkg -i over it) restarts the running service and keeps it enabled and the
#      edited conffile; dpkg --purge stops it and removes the key, the state and the symlink.
# If systemd does not boot, it says so and exits 1; it never skips.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

readonly SUITE=${SUITE:-bookworm}
readonly CACHE_DIR=/var/cache/lastfm-monitor-ci
# procps is the package's one dependency beyond minbase (/bin/kill for ExecReload=): with it here
# dpkg -i needs no mirror.
readonly INCLUDE=systemd,systemd-sysv,dbus,ca-certificates,curl,procps
readonly KEY=0123456789abcdef0123456789abcdef # a test key: the simulator accepts this one only
readonly SIM_PORT=18080
readonly WATCHDOG_TEST_SEC=4
readonly MAX_EXPOSURE=1.5
readonly UNIT=lastfm-monitor.service

started=$SECONDS
step() { printf '\n== %s (t=%ss)\n' "$*" "$((SECONDS - started))"; }
failures=0
ok() { echo "ok: $*"; }
fail() {
    echo "FAIL: $*" >&2
    failures=$((failures + 1))
}
die() {
    echo "FATAL: $*" >&2
    exit 1
}

[[ $(id -u) == 0 ]] || die "needs root (debootstrap, systemd-nspawn)"

# --- Tools ---------------------------------------------------------------------------------------
need=()
command -v systemd-nspawn >/dev/null || need+=(systemd-container)
command -v debootstrap >/dev/null || need+=(debootstrap)
command -v nsenter >/dev/null || need+=(util-linux)
if ((${#need[@]})); then
    step "installing ${need[*]}"
    export DEBIAN_FRONTEND=noninteractive
    timeout 120 apt-get update -qq
    timeout 180 apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

# --- The package -----------------------------------------------------------------------------------
deb=${1:-}
if [[ -z $deb ]]; then
    step "building the package (packaging/build-deb.sh)"
    deb=$(bash packaging/build-deb.sh | tee /dev/stderr | tail -1)
fi
[[ -f $deb ]] || die "no .deb at '$deb'"
deb=$(realpath "$deb")
echo "package: $deb"

# --- The rootfs, cached ------------------------------------------------------------------------------
mirror=${MIRROR:-}
if [[ -z $mirror ]]; then
    # The first URI of apt's sources that serves $SUITE (deb822 .sources or one-line format),
    # skipping the security archive.
    mirror=$(/usr/bin/python3 - "$SUITE" <<'EOF' || true
import glob, re, sys
suite = sys.argv[1]
found = []
for path in sorted(glob.glob("/etc/apt/sources.list.d/*.sources")):
    for stanza in re.split(r"\n\s*\n", open(path).read()):
        fields = dict(re.findall(r"^(\S+):\s*(.*)$", stanza, re.M))
        if suite in fields.get("Suites", "").split() and "deb" in fields.get("Types", "").split():
            found += fields.get("URIs", "").split()
for path in ["/etc/apt/sources.list"] + sorted(glob.glob("/etc/apt/sources.list.d/*.list")):
    try:
        for line in open(path):
            m = re.match(r"^deb\s+(?:\[[^\]]*\]\s+)?(\S+)\s+(\S+)", line)
            if m and m.group(2) == suite:
                found.append(m.group(1))
    except OSError:
        pass
found = [u for u in found if "security" not in u]
print(found[0] if found else "")
EOF
)
    mirror=${mirror:-http://deb.debian.org/debian}
fi
key=$(printf '%s %s' "$SUITE" "$INCLUDE" | sha256sum | cut -c1-12)
readonly TARBALL=$CACHE_DIR/rootfs-$SUITE-minbase-$key.tar
mkdir -p "$CACHE_DIR"

root=
nspawn_pid=
leader=
log=
cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    # The container's console log is kept only when something failed.
    if [[ -n $log && $rc == 0 ]]; then rm -f -- "$log"; elif [[ -n $log ]]; then echo "container console log: $log" >&2; fi
    if [[ -n $nspawn_pid ]] && kill -0 "$nspawn_pid" 2>/dev/null; then
        # SIGTERM makes nspawn power the container off (SIGRTMIN+3 to its systemd); then SIGKILL.
        kill -TERM "$nspawn_pid" 2>/dev/null || true
        for _ in $(seq 1 100); do kill -0 "$nspawn_pid" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$nspawn_pid" 2>/dev/null || true
        wait "$nspawn_pid" 2>/dev/null || true
    fi
    if [[ -n $root && -d $root ]]; then
        # nspawn mounts in its own namespace; unmount anything that leaked here before removing.
        grep -F " $root" /proc/self/mountinfo | awk '{print $5}' | sort -r |
            xargs -r -n1 umount -l 2>/dev/null || true
        rm -rf --one-file-system -- "$root"
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

if [[ -f $TARBALL ]]; then
    step "rootfs: cached $TARBALL"
else
    step "rootfs: debootstrap --variant=minbase $SUITE from $mirror (cold cache)"
    t=$SECONDS
    build=$(mktemp -d /var/tmp/lastfm-monitor-debootstrap.XXXXXX)
    chmod 0755 "$build" # mktemp makes it 0700, and it becomes the container's /
    root=$build # cleaned up by the trap if debootstrap fails
    if ! timeout 360 debootstrap --variant=minbase --include="$INCLUDE" "$SUITE" "$build" "$mirror" \
        >"$CACHE_DIR/debootstrap.log" 2>&1; then
        tail -20 "$CACHE_DIR/debootstrap.log" >&2
        die "debootstrap failed (log: $CACHE_DIR/debootstrap.log)"
    fi
    rm -f "$build"/var/cache/apt/archives/*.deb
    tar -C "$build" --numeric-owner -cf "$TARBALL.tmp" . && mv "$TARBALL.tmp" "$TARBALL"
    # Tarballs of an older package list for this suite are never used again.
    find "$CACHE_DIR" -maxdepth 1 -name "rootfs-$SUITE-minbase-*.tar" ! -path "$TARBALL" -delete
    rm -rf --one-file-system -- "$build"
    root=
    echo "debootstrap + tarball: $((SECONDS - t)) s, $(du -h "$TARBALL" | cut -f1)"
fi

step "rootfs: unpack"
t=$SECONDS
root=$(mktemp -d /var/tmp/lastfm-monitor-nspawn.XXXXXX)
tar -C "$root" --numeric-owner -xpf "$TARBALL"
# The container's / must be 0755 like any /: mktemp made it 0700, so only root could reach
# anything (dbus-daemon then hangs the boot, the DynamicUser= daemon cannot exec its binary).
chmod 0755 "$root"
cp "$deb" "$root/root/lastfm-monitor.deb"
printf '127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n' >"$root/etc/hosts"
echo lastfm-ci >"$root/etc/hostname"
# A fresh machine ID at every boot (nspawn provides one when the file is empty).
: >"$root/etc/machine-id"
mkdir -p "$root/etc/lastfm-monitor-ci"
cat >"$root/etc/lastfm-monitor-ci/healthy.toml" <<EOF
# Simulator scenario: always healthy, and only this API key is valid (another gets error 10).
name = "ci-healthy"
[[keys]]
api_key = "$KEY"
[[phases]]
name = "healthy"
rules = []
EOF
cat >"$root/etc/lastfm-monitor-ci/config.toml" <<EOF
# The operator's edit of /etc/lastfm-monitor/config.toml for the test: one target, the simulator.
[web]
listen_address = "127.0.0.1:10987"

[defaults]
interval = "2s"
timeout = "1s"
startup_jitter = "0s"

[[targets]]
name = "sim"
base_url = "http://localhost:$SIM_PORT/2.0/"
api_key = { credential = "api_key" }
max_requests_per_second = 5.0
burst = 5

[[targets.probes]]
name = "user.getInfo"
method = "user.getInfo"
params = { user = "RJ" }
checks = [{ pointer = "/user/name", equals = "RJ" }]

[[targets.probes]]
method = "chart.getTopArtists"
params = { limit = 1 }
EOF
echo "unpacked in $((SECONDS - t)) s: $root"

# --- Boot --------------------------------------------------------------------------------------------
step "boot: systemd-nspawn --boot --register=no --keep-unit --private-network"
boot_started=$SECONDS
log=$(mktemp /tmp/lastfm-monitor-nspawn.XXXXXX.log)
# --register=no: no machined here. --keep-unit: no scope unit (the host need not run systemd).
# --private-network: only a loopback of its own, so port 10987 cannot clash with the host's.
systemd-nspawn -D "$root" --boot --register=no --keep-unit --private-network \
    --console=pipe --machine=lastfm-ci-$$ </dev/null >"$log" 2>&1 &
nspawn_pid=$!
# The container's PID 1 is nspawn's child (nspawn is its subreaper) in another PID namespace.
for _ in $(seq 1 100); do
    for pid in $(pgrep -P "$nspawn_pid" 2>/dev/null || true); do
        if [[ $(readlink "/proc/$pid/ns/pid" 2>/dev/null) != "$(readlink /proc/self/ns/pid)" &&
            $(cat "/proc/$pid/comm" 2>/dev/null) == systemd ]]; then
            leader=$pid
        fi
    done
    [[ -n $leader ]] && break
    kill -0 "$nspawn_pid" 2>/dev/null || break
    sleep 0.1
done
if [[ -z $leader ]]; then
    tail -30 "$log" >&2
    die "systemd did not boot in the container (no systemd PID 1 under nspawn $nspawn_pid; log: $log)"
fi
echo "container PID 1 = host PID $leader"

# ct CMD...: runs CMD inside the container: all its namespaces, its root, a clean environment.
ct() {
    nsenter --target "$leader" --all --root --wd -- \
        /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin LANG=C.UTF-8 SYSTEMD_PAGER=cat \
        SYSTEMD_COLORS=0 "$@"
}
prop() { ct systemctl show -P "$2" "$1"; }

# systemctl talks to PID 1 over /run/systemd/private, which appears a moment after it starts.
for _ in $(seq 1 300); do
    ct test -S /run/systemd/private 2>/dev/null && break
    kill -0 "$nspawn_pid" 2>/dev/null || break
    sleep 0.1
done
state=$(ct timeout 90 systemctl is-system-running --wait 2>&1 || true)
case $state in
running | degraded)
    ok "systemd $(ct systemctl --version | awk 'NR == 1 { print $2 }') booted in $((SECONDS - boot_started)) s: $state"
    [[ $state == running ]] || ct systemctl --failed --no-legend || true
    ;;
*)
    tail -30 "$log" >&2
    die "systemd did not finish booting in the container (is-system-running: ${state:-timeout}; log: $log)"
    ;;
esac

# Bounded polling: wait_for SECONDS DESCRIPTION COMMAND...
wait_for() {
    local limit=$1 what=$2 deadline
    shift 2
    deadline=$((SECONDS + limit))
    until "$@" >/dev/null 2>&1; do
        if ((SECONDS >= deadline)); then
            fail "$what (not within ${limit}s)"
            return 1
        fi
        sleep 0.25
    done
    return 0
}
# Seconds since $1 (date +%s.%N), and a float comparison: less A B is true when A < B.
elapsed() { awk -v a="$1" -v b="$(date +%s.%N)" 'BEGIN { printf "%.2f", b - a }'; }
less() { awk -v a="$1" -v b="$2" 'BEGIN { exit !(a + 0 < b + 0) }'; }
# grep that reads all of its input (grep -q would SIGPIPE the producer; with pipefail the
# pipeline would then fail although it matched).
qgrep() { grep "$@" >/dev/null; }
metrics() { ct curl -sf --max-time 3 http://127.0.0.1:10987/metrics; }
# The value of the first series matching an extended regex (0 when absent).
series() { metrics 2>/dev/null | awk -v re="$1" '$0 ~ re { s += $NF } END { print s + 0 }' || true; }
successes() { series '^lastfm_probe_runs_total[{].*outcome="success"'; }
has_successes() { less 0 "$(successes)"; }
journal_since() { ct journalctl --no-pager -o cat --since "@$1" "${@:2}"; }
now() { ct date +%s; }

# --- 1. Install ------------------------------------------------------------------------------------
step "1. dpkg -i (postinst under a running systemd)"
if out=$(ct timeout 120 dpkg -i /root/lastfm-monitor.deb 2>&1); then
    echo "$out" | sed 's/^/  dpkg: /'
    ok "installed $(ct dpkg-query -W -f '${Package} ${Version}' lastfm-monitor)"
else
    echo "$out" >&2
    echo "  trying apt-get -f install (needs the mirror)" >&2
    ct timeout 180 apt-get -f install -y -qq || die "the package does not install"
fi
[[ $(prop $UNIT LoadState) == loaded ]] && ok "systemd knows the unit (postinst ran daemon-reload)" ||
    fail "unit not loaded after install"
[[ $(prop $UNIT FragmentPath) == /lib/systemd/system/$UNIT ]] && ok "unit file at /lib/systemd/system/$UNIT" ||
    fail "unit file at $(prop $UNIT FragmentPath)"
enabled=$(ct systemctl is-enabled $UNIT 2>&1 || true)
active=$(ct systemctl is-active $UNIT 2>&1 || true)
[[ $enabled == disabled && $active == inactive ]] && ok "not enabled, not started by the package" ||
    fail "after install: is-enabled=$enabled is-active=$active (expected disabled/inactive)"
[[ $(ct dpkg-query -W -f '${Conffiles}' lastfm-monitor) == *"/etc/lastfm-monitor/config.toml"* ]] &&
    ok "/etc/lastfm-monitor/config.toml is a conffile" || fail "config.toml is not a conffile"
grep -q '^api_key = { credential = "api_key" }' "$root/etc/lastfm-monitor/config.toml" &&
    ok "packaged config reads the key as { credential = \"api_key\" }" ||
    fail "packaged config does not use { credential = \"api_key\" }"
ct mkdir -p /run/ci-creds && printf '%s\n' "$KEY" | ct tee /run/ci-creds/api_key >/dev/null
if out=$(ct env CREDENTIALS_DIRECTORY=/run/ci-creds lastfm-monitor \
    --config.file /etc/lastfm-monitor/config.toml --config.check 2>&1); then
    ok "packaged config validates: $(head -1 <<<"$out")"
else
    echo "$out" >&2
    fail "packaged config does not validate"
fi
ct rm -rf /run/ci-creds
ct test -e /usr/share/lastfm-monitor/dashboards/lastfm-monitor.json && ct test -e /usr/share/doc/lastfm-monitor/copyright &&
    ok "dashboards and docs installed" || fail "dashboards or docs missing"

# --- 2. No key, no start -------------------------------------------------------------------------------
step "2. start without /etc/lastfm-monitor/api_key"
if ct timeout 30 systemctl start $UNIT 2>/dev/null; then
    fail "started without an API key"
    ct systemctl stop $UNIT || true
else
    st=$(prop $UNIT ExecMainStatus)
    [[ $st == 243 ]] && ok "refused: status=243/CREDENTIALS ($(prop $UNIT Result)), then $(prop $UNIT ActiveState) ($(prop $UNIT SubState)); journal: $(ct journalctl --no-pager -o cat -u $UNIT | grep -m1 'Failed to set up credentials' || true)" ||
        fail "failed, but with ExecMainStatus=$st (expected 243/CREDENTIALS)"
fi
# Restart=on-failure retries every RestartSec (until StartLimitBurst): stop cancels that.
ct timeout 30 systemctl stop $UNIT || true
ct systemctl reset-failed $UNIT 2>/dev/null || true

# --- 3. The packaged config as shipped ---------------------------------------------------------------
step "3. start with the key and the packaged config (Last.fm unreachable: no network)"
printf '%s\n' "$KEY" | ct install -m 0600 /dev/stdin /etc/lastfm-monitor/api_key
t0=$(date +%s.%N)
since=$(now)
if ct timeout 30 systemctl start $UNIT; then
    ct journalctl --no-pager -o short-precise --since "@$since" -u $UNIT | sed 's/^/  journal: /'
    [[ $(prop $UNIT SubState) == running ]] && ok "active (running) with the packaged config after $(elapsed "$t0") s, status \"$(prop $UNIT StatusText)\"" ||
        fail "SubState=$(prop $UNIT SubState)"
else
    ct journalctl -u $UNIT --no-pager -n 30 >&2 || true
    fail "the unit as shipped does not start with the packaged config"
fi
t0=$(date +%s.%N)
ct timeout 30 systemctl stop $UNIT || fail "stop"
echo "stopped in $(elapsed "$t0") s"

# --- 4. Against the simulator -----------------------------------------------------------------------------
step "4. simulator (transient unit) and the daemon against it"
ct systemd-run --quiet --unit=lastfm-sim --property=DynamicUser=yes \
    /usr/bin/lastfm-monitor simulate --listen 127.0.0.1:$SIM_PORT --scenario /etc/lastfm-monitor-ci/healthy.toml
sim_up() { ct curl -sf --max-time 2 -d "method=user.getInfo&user=RJ&format=json&api_key=$KEY" "http://localhost:$SIM_PORT/2.0/"; }
wait_for 20 "simulator answers on localhost:$SIM_PORT" sim_up && ok "simulator: $(prop lastfm-sim.service ActiveState), answers"
ct cp /etc/lastfm-monitor-ci/config.toml /etc/lastfm-monitor/config.toml
ct mkdir -p /etc/systemd/system/$UNIT.d
ct tee /etc/systemd/system/$UNIT.d/ci-watchdog.conf >/dev/null <<EOF
# nspawn-check.sh: a short watchdog so the test sees it fire in seconds.
[Service]
WatchdogSec=${WATCHDOG_TEST_SEC}s
EOF
ct systemctl daemon-reload
t0=$(date +%s.%N)
if ct timeout 30 systemctl start $UNIT; then
    ok "systemctl start returned after READY=1 in $(elapsed "$t0") s: $(prop $UNIT ActiveState) ($(prop $UNIT SubState)), Type=$(prop $UNIT Type), status \"$(prop $UNIT StatusText)\""
else
    ct journalctl -u $UNIT --no-pager -n 40 >&2 || true
    die "the daemon does not start against the simulator"
fi
[[ $(prop $UNIT WatchdogUSec) == "${WATCHDOG_TEST_SEC}s" ]] || fail "WatchdogUSec=$(prop $UNIT WatchdogUSec)"
wait_for 20 "successful runs in /metrics" has_successes &&
    ok "/metrics: $(successes) successful runs ($(metrics | grep -cE '^lastfm_probe_runs_total[{].*outcome="success"') series)"

# --- 5. Watchdog -------------------------------------------------------------------------------------------
step "5. watchdog (WatchdogSec=${WATCHDOG_TEST_SEC}s in a drop-in)"
pid=$(prop $UNIT MainPID)
restarts=$(prop $UNIT NRestarts)
sleep $((2 * WATCHDOG_TEST_SEC + 1))
[[ $(prop $UNIT MainPID) == "$pid" && $(prop $UNIT NRestarts) == "$restarts" && $(prop $UNIT SubState) == running ]] &&
    ok "alive after $((2 * WATCHDOG_TEST_SEC + 1)) s (> 2 x WatchdogSec), same MainPID $pid" ||
    fail "not kept alive by its pings: MainPID $pid -> $(prop $UNIT MainPID), NRestarts $restarts -> $(prop $UNIT NRestarts)"
since=$(now)
ct kill -STOP "$pid"
new_main() { local p; p=$(prop $UNIT MainPID); [[ $p != 0 && $p != "$pid" && $(prop $UNIT SubState) == running ]]; }
if wait_for 40 "watchdog kill and restart after SIGSTOP" new_main; then
    ok "SIGSTOP of $pid -> restarted as MainPID $(prop $UNIT MainPID) after $(($(now) - since)) s, NRestarts=$(prop $UNIT NRestarts)"
fi
journal_since "$since" -u $UNIT | qgrep 'Watchdog timeout' && ok "journal: $(journal_since "$since" -u $UNIT | grep -m1 'Watchdog timeout')" ||
    fail "no 'Watchdog timeout' in the journal"
journal_since "$since" -u $UNIT | grep -E 'Main process exited|Failed with result|Scheduled restart' | sed 's/^/  journal: /'
wait_for 20 "successful runs after the restart" has_successes

# --- 6. Reload ---------------------------------------------------------------------------------------------
step "6. systemctl reload"
pid=$(prop $UNIT MainPID)
ct tee -a /etc/lastfm-monitor/config.toml >/dev/null <<'EOF'

[[targets.probes]]
name = "ci.reload"
method = "tag.getInfo"
params = { tag = "rock" }
EOF
ct systemctl reload $UNIT
new_probe() { less 0 "$(series '^lastfm_probe_runs_total[{](.*probe="ci[.]reload".*outcome="success"|.*outcome="success".*probe="ci[.]reload")')"; }
wait_for 20 "the new probe ci.reload in /metrics after reload" new_probe && ok "reloaded: probe ci.reload runs, MainPID still $(prop $UNIT MainPID)"
[[ $(prop $UNIT MainPID) == "$pid" ]] || fail "reload changed MainPID"
[[ $(series '^lastfm_monitor_config_last_reload_successful') == 1 ]] && ok "lastfm_monitor_config_last_reload_successful 1" ||
    fail "reload gauge $(series '^lastfm_monitor_config_last_reload_successful')"
ct cp /etc/lastfm-monitor/config.toml /root/good.toml
ct tee -a /etc/lastfm-monitor/config.toml >/dev/null <<'EOF'

[[targets.probes]]
name = "ci.broken"
method = "track.search"
bogus_key = 1
EOF
since=$(now)
before=$(successes)
ct systemctl reload $UNIT
refused() { journal_since "$since" -u $UNIT | qgrep 'bogus_key'; }
if wait_for 15 "the refused config's error in the journal" refused; then
    ok "refused, journal says:"
    journal_since "$since" -u $UNIT | grep -E 'bogus_key|refused|reload' | sed 's/^/  journal: /'
fi
sleep 3
after=$(successes)
[[ $(prop $UNIT MainPID) == "$pid" && $(prop $UNIT SubState) == running ]] && less "$before" "$after" &&
    ok "old config keeps running: same MainPID, successful runs $before -> $after" ||
    fail "after a refused reload: MainPID $(prop $UNIT MainPID), SubState $(prop $UNIT SubState), runs $before -> $after"
[[ $(series '^lastfm_monitor_config_last_reload_successful') == 0 ]] && ok "lastfm_monitor_config_last_reload_successful 0" ||
    fail "reload gauge after a refused reload: $(series '^lastfm_monitor_config_last_reload_successful')"
metrics | qgrep 'probe="ci.broken"' && fail "the refused probe appeared in /metrics"
ct cp /root/good.toml /etc/lastfm-monitor/config.toml
ct systemctl reload $UNIT
good_again() { [[ $(series '^lastfm_monitor_config_last_reload_successful') == 1 ]]; }
wait_for 15 "reload of the fixed config" good_again && ok "fixed config reloaded"

# --- 7. The key only through LoadCredential ------------------------------------------------------------
step "7. API key through LoadCredential only"
pid=$(prop $UNIT MainPID)
leaks=0
for p in Environment ExecStart ExecReload; do
    if prop $UNIT $p | qgrep "$KEY"; then
        fail "the key is ct systemctl show -p $p"
        leaks=1
    fi
done
ct cat /proc/"$pid"/cmdline | tr '\0' ' ' | qgrep "$KEY" && { fail "the key is on the command line"; leaks=1; }
ct cat /proc/"$pid"/environ | tr '\0' '\n' | qgrep "$KEY" && { fail "the key is in the process environment"; leaks=1; }
ct journalctl --no-pager -o cat | qgrep "$KEY" && { fail "the key is in the journal"; leaks=1; }
((leaks)) || ok "not in Environment= ($(prop $UNIT Environment | wc -w) entries), ExecStart=, /proc/$pid/cmdline, /proc/$pid/environ, the journal"
ct cat /proc/"$pid"/environ | tr '\0' '\n' | qgrep '^CREDENTIALS_DIRECTORY=/run/credentials/lastfm-monitor.service$' &&
    ct test -f /run/credentials/lastfm-monitor.service/api_key &&
    ok "CREDENTIALS_DIRECTORY=/run/credentials/lastfm-monitor.service holds api_key; the simulator accepts only that key and the runs succeed" ||
    fail "no credential directory with api_key"
ct systemctl cat $UNIT | grep '^LoadCredential' | sed 's/^/  unit: /'

# --- 8. State and stop --------------------------------------------------------------------------------------
step "8. StateDirectory and stop"
state_file=/var/lib/private/lastfm-monitor/state.json
wait_for 30 "$state_file written" ct test -s $state_file && ok "$state_file exists ($(ct stat -c '%s bytes, owner %u' $state_file)); /var/lib/lastfm-monitor -> $(ct readlink /var/lib/lastfm-monitor)"
since=$(now)
ct timeout 40 systemctl restart $UNIT || fail "restart"
restored() { journal_since "$since" -u $UNIT | qgrep 'restored request budgets and probe cadence from the state file'; }
wait_for 10 "the restarted daemon restores the state file" restored && ct test -s $state_file &&
    ok "survives restart: journal says \"restored request budgets and probe cadence from the state file\""
wait_for 20 "successful runs after the restart" has_successes
timeout_stop=$(prop $UNIT TimeoutStopUSec)
since=$(now)
t0=$(date +%s.%N)
ct timeout 40 systemctl stop $UNIT || fail "stop"
took=$(elapsed "$t0")
# An inactive unit is unloaded at once, so `systemctl show` no longer has its exit status: read
# it in the journal. A clean stop: the daemon logs "shutting down", systemd logs
# "Deactivated successfully" and no failure, timeout or SIGKILL.
stop_log=$(journal_since "$since" -u $UNIT)
if less "$took" 20 && qgrep -F 'Deactivated successfully' <<<"$stop_log" &&
    qgrep 'shutting down' <<<"$stop_log" &&
    ! qgrep -E 'timed out|Killing|code=killed|status=[1-9]|Failed with result' <<<"$stop_log"; then
    ok "stop: $took s (TimeoutStopSec=$timeout_stop), clean: \"shutting down\", \"Deactivated successfully\""
else
    echo "$stop_log" >&2
    fail "stop: $took s, not clean (journal above)"
fi
ct test -s $state_file && ok "$state_file still there after stop"

# --- 9. Syscall filter ----------------------------------------------------------------------------------------
step "9. syscall filter: the journal, then the same workload with SystemCallErrorNumber=kill"
bad='SIGSYS|status=31|Bad system call|Operation not permitted|EPERM|Permission denied'
if ct journalctl --no-pager -o cat -u $UNIT | grep -E "$bad"; then
    fail "the unit's journal has SIGSYS/EPERM lines (above)"
else
    ok "no SIGSYS/EPERM/permission lines in the unit's journal ($(ct journalctl --no-pager -o cat -u $UNIT | wc -l) lines)"
fi
ct journalctl --no-pager -o cat | grep -E 'SIGSYS|status=31|Bad system call' && fail "SIGSYS in the journal"
ct tee /etc/systemd/system/$UNIT.d/ci-seccomp-kill.conf >/dev/null <<'EOF'
# nspawn-check.sh: a refused syscall kills the daemon (SIGSYS) instead of returning EPERM, so
# none can pass unnoticed.
[Service]
SystemCallErrorNumber=kill
EOF
ct systemctl daemon-reload
since=$(now)
ct timeout 30 systemctl start $UNIT || fail "start with SystemCallErrorNumber=kill"
pid=$(prop $UNIT MainPID)
wait_for 20 "runs with SystemCallErrorNumber=kill" has_successes
ct cp /root/good.toml /etc/lastfm-monitor/config.toml && ct systemctl reload $UNIT && sleep 3
ct curl -sf --max-time 3 -o /dev/null http://127.0.0.1:10987/ || true
ct curl -sf --max-time 3 -o /dev/null -X POST http://127.0.0.1:10987/-/reload || true
sleep 2
ct timeout 30 systemctl restart $UNIT && sleep 3
ct timeout 30 systemctl stop $UNIT || true
kill_log=$(journal_since "$since" -u $UNIT)
if grep -E 'SIGSYS|status=31|Bad system call|code=killed|Failed with result' <<<"$kill_log"; then
    fail "a syscall refused by the filter killed the daemon (above)"
elif [[ $(grep -c 'Deactivated successfully' <<<"$kill_log") -ge 2 ]]; then
    ok "start, probes, reload (SIGHUP and POST), status page, restart, stop: no SIGSYS, both stops clean"
else
    echo "$kill_log" >&2
    fail "with SystemCallErrorNumber=kill: no clean stop in the journal (above)"
fi

# --- 10. Online exposure -----------------------------------------------------------------------------------------
step "10. systemd-analyze security $UNIT (online, without the test drop-ins)"
ct rm -rf /etc/systemd/system/$UNIT.d
ct systemctl daemon-reload
out=$(ct systemd-analyze security --no-pager $UNIT 2>&1 || true)
line=$(grep 'Overall exposure level' <<<"$out" || true)
exposure=$(sed -n 's/.*: \([0-9.]*\) .*/\1/p' <<<"$line")
if [[ -n $exposure ]] && ! less "$MAX_EXPOSURE" "$exposure"; then
    ok "$line"
else
    echo "$out" >&2
    fail "online exposure '${exposure:-?}' above $MAX_EXPOSURE"
fi
grep -E '^✗' <<<"$out" | sed 's/^/  /' || true

# --- 11. Upgrade and purge ----------------------------------------------------------------------------------------
step "11. upgrade (dpkg -i again) restarts a running service; dpkg --purge removes everything"
ct systemctl enable --quiet $UNIT
ct timeout 30 systemctl start $UNIT || fail "start before the upgrade"
pid=$(prop $UNIT MainPID)
ct timeout 120 dpkg -i /root/lastfm-monitor.deb >/dev/null || fail "dpkg -i over the installed package"
[[ $(prop $UNIT SubState) == running && $(prop $UNIT MainPID) != "$pid" ]] &&
    [[ $(ct systemctl is-enabled $UNIT 2>&1) == enabled ]] &&
    ok "upgrade: postinst try-restart gave MainPID $pid -> $(prop $UNIT MainPID); still enabled; conffile kept: $(grep -c 'localhost:18080' "$root/etc/lastfm-monitor/config.toml") line with the test target" ||
    fail "upgrade: SubState=$(prop $UNIT SubState) MainPID $pid -> $(prop $UNIT MainPID), is-enabled=$(ct systemctl is-enabled $UNIT 2>&1 || true)"
ct timeout 60 dpkg --purge lastfm-monitor >/dev/null || fail "dpkg --purge"
gone=1
for f in /usr/bin/lastfm-monitor /lib/systemd/system/$UNIT /etc/lastfm-monitor /var/lib/private/lastfm-monitor /var/lib/lastfm-monitor \
    /etc/systemd/system/multi-user.target.wants/$UNIT; do
    ct test -e "$f" -o -L "$f" && { fail "$f left after purge"; gone=0; }
done
[[ $(ct systemctl is-active $UNIT 2>&1 || true) != active ]] || fail "still running after purge"
((gone)) && ok "purge stopped the service and removed the binary, unit, config, key, state and enable symlink"

# --- Done ----------------------------------------------------------------------------------------------------------
step "boot-wide journal lines mentioning EPERM or denials (informational, not the daemon's)"
ct journalctl --no-pager -o short-monotonic | grep -iE 'Operation not permitted|EPERM|denied' | grep -v -- "$UNIT" | head -10 || true

if ((failures)); then
    echo "systemd/nspawn-check.sh: $failures failure(s) in $((SECONDS - started)) s" >&2
    exit 1
fi
echo "systemd/nspawn-check.sh: OK in $((SECONDS - started)) s"
