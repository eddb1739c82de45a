#!/usr/bin/env python3
"""End-to-end proof that the monitor tells our network's faults from Last.fm's, from one vantage
and from several: real network faults in Linux network namespaces, the real daemon on three
vantages, a real Prometheus with the shipped rules and a real Alertmanager with the shipped
config, every assertion made on DELIVERED notifications (a webhook receiver records them).

Topology (all addresses live only inside namespaces this test creates; nothing leaves the machine):

    lfm<pid>-inet  "the internet"        203.0.113.10:443  Last.fm: TLS front door (tlsproxy.py)
                                                           -> `lastfm-monitor simulate` on
                                                           127.0.0.1:8080 (healthy.toml) or
                                                           :8081 (offline.toml, error 11)
                                         203.0.113.20:80   reference web server (http.server)
                                         203.0.113.53:53   DNS (dnsmasq): ws.lastfm.test,
                                                           ref.lastfm.test
                                         203.0.113.55:53   a lying DNS (dnsmasq): NXDOMAIN
         | wan (veth, 198.51.100.0/30 per vantage; default route)
    lfm<pid>-a/-b/-c  vantages A, B, C   lastfm-monitor on the LAN address :10987, its own
                                         /etc/netns/NAME/resolv.conf -> 203.0.113.53
         | lan (veth, 192.0.2.0/30 per vantage)
    lfm<pid>-mon  monitoring             Prometheus 127.0.0.1:9090 (scrapes the three with a
                                         `vantage` label, shipped rules with rewritten timings),
                                         Alertmanager 127.0.0.1:9093 (shipped config, timings and
                                         receivers rewritten to the webhook), webhook 127.0.0.1:9099
                                         (this process, which moves itself into this namespace)

Each daemon probes https://ws.lastfm.test/2.0/ (DNS, connect, TLS with the test's own CA through
SSL_CERT_FILE) every 2 s, and two references every second: http://203.0.113.20/ (by address)
and http://ref.lastfm.test/ (by name). With --agents each vantage also runs a Prometheus agent
(the shipped prometheus/agent-vantage.yml) that remote-writes over the LAN link to the central
Prometheus (the shipped prometheus/central.yml, no scrape job); without, the central one scrapes
the three itself (central.yml's job, one static_configs entry per vantage).

Configuration under test, loaded as shipped, only timings and the receiver rewritten (PyYAML):
- prometheus/lastfm-monitor.rules.yml: every group evaluated every 1 s, every `for:` and
  `keep_firing_for:` divided by --for-scale=60, at least --min-for=2 s (5m -> 5 s), so the
  shipped order between alerts holds; durations inside expressions (an `offset`) stay as shipped;
- alertmanager/alertmanager.yml: route group_wait 4 s (it covers the spread of the three
  monitors' probe schedules, so error 11 seen by all three is one POST), group_interval 2 s,
  repeat_interval 1h; every receiver replaced by the test's webhook at /hook/<receiver>; inhibit
  rules and routing as shipped.
--rules and --alertmanager-config point elsewhere to try a change.

Phases, each asserting DELIVERED notifications (alertname, labels, annotations.summary,
firing/resolved), and each fault first checked as a plain program on the vantage sees it:
  1  healthy                  nothing delivered; every reference up; the last runs timed dns,
                              connect, tls and first_byte; the exported certificate notAfter is
                              the front door's
  2  B's WAN link down        B local_network_down=1, LastfmMonitorNetworkDown{vantage=B}
                              delivered and nothing else; B's lastfm_service_available never 0
  3  C's resolver lies        (C's resolv.conf -> a dnsmasq answering NXDOMAIN) C's
                              lastfm_probe_failures_total grows only at phase=dns reason=nxdomain,
                              on every probe, A's and B's not at all; C's reference by address
                              stays up, the one by name fails at dns/nxdomain; not local
  4  error 11 for everyone    (the front door switches to the offline simulator) exactly one
                              LastfmServiceOffline notification group (one groupKey, one POST)
  4b certificate expiring     (the front door reloads a certificate valid 7 days) every vantage
                              exports its notAfter; LastfmCertificateExpiringSoon in one group
  5  Last.fm refuses all      (front door stopped: connect refused, references fine)
                              LastfmTargetUnavailable delivered, no LastfmUnreachableFromVantage;
                              failures at connect/refused; no vantage local
  5b Last.fm cut from A, B    (unreachable routes to 203.0.113.10 in A and B; C fine) quorum alert
                              delivered; Prometheus fires LastfmUnreachableFromVantage for A and B
                              and Alertmanager holds both back as inhibited; A is repaired first,
                              B once A is available again, and the held-back warning must not be
                              delivered on the way out either
  6  A alone cut off          (unreachable route in A only, references fine)
                              LastfmUnreachableFromVantage{vantage=A} delivered, no quorum alert;
                              A's failures at connect/unreachable
  7  recovery                 a resolved notification for every alert that fired; nothing left
                              pending, firing or suppressed
After every fault the test repairs it and waits (bounded) until the monitors are healthy, nothing
is pending or firing and every fired alert's resolved notification has arrived; what a phase
forbade must not be delivered during that recovery either.

A result is PASS, FAIL, or WAIT: WAIT means the assertion needs a daemon metric or config key,
or an alert rule, that is not there yet (detected from the binary's --config.check and /metrics
and from the rules file, and named), so the test also runs against an older daemon.
Exit status: 0 all PASS, 1 any FAIL, 3 only WAITs (0 with --allow-wait).

Usage (root; Linux network namespaces):
  cargo build --locked
  python3 dashboards/e2e-vantage.py [--agents] [--binary target/debug/lastfm-monitor]
                                    [--phases 1,5b,7] [--keep]
Needs (Debian): iproute2, prometheus (prometheus, promtool), prometheus-alertmanager
(prometheus-alertmanager, amtool), dnsmasq-base (/usr/sbin/dnsmasq, run in the foreground with
--conf-file=/dev/null: no service), openssl, python3-yaml. Bounded: every wait has a limit and
the whole run gives up after --deadline seconds (360). Cleans up (processes, namespaces,
/etc/netns entries) even on failure or SIGTERM; a later run also removes leftovers of a run that
was killed outright.
"""

import argparse
import atexit
import ctypes
import json
import os
import re
import shutil
import signal
import ssl
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import yaml

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
FIX = os.path.join(HERE, "e2e-vantage")
RULES = os.path.join(HERE, "prometheus", "lastfm-monitor.rules.yml")
AM_CONFIG = os.path.join(HERE, "alertmanager", "alertmanager.yml")

LASTFM_HOST = "ws.lastfm.test"
REF_HOST = "ref.lastfm.test"
LASTFM_IP = "203.0.113.10"
REF_IP = "203.0.113.20"
DNS_IP = "203.0.113.53"
LIAR_DNS_IP = "203.0.113.55"
SIM_PORTS = {"healthy": 8080, "offline": 8081}
PROM = "http://127.0.0.1:9090"
AM = "http://127.0.0.1:9093"
HOOK_PORT = 9099
VANTAGES = ["A", "B", "C"]
API_KEY = "0123456789abcdef0123456789abcdef"
# The longest probe timeout in the vantages' configs (1500ms) and a margin: after it, no run
# that started before a fault is still going.
IN_FLIGHT_SECONDS = 1.8
TARGET = "lastfm"
PROBES = ["user.getInfo", "artist.getInfo"]
REFERENCES = ["inet-ip", "inet-dns"]
CLONE_NEWNET = 0x40000000

# The alerts this test is about (the new rules), and the daemon features it needs.
NEW_ALERTS = ["LastfmMonitorNetworkDown", "LastfmTargetUnavailable", "LastfmUnreachableFromVantage"]
WATCHED = NEW_ALERTS + ["LastfmServiceOffline", "LastfmCertificateExpiringSoon"]

DAEMON_CONFIG = """\
[web]
listen_address = "{listen}"

[defaults]
interval = "2s"
timeout = "1500ms"
startup_jitter = "1s"

[[targets]]
name = "{target}"
base_url = "https://{host}/2.0/"
api_key = {{ env = "LASTFM_API_KEY" }}
max_requests_per_second = 20.0
burst = 20
down_after = 2
up_after = 2

[[targets.probes]]
method = "user.getInfo"
params = {{ user = "rj" }}

[[targets.probes]]
method = "artist.getInfo"
params = {{ artist = "Cher" }}
"""

REFERENCES_CONFIG = """
[[references]]
name = "inet-ip"
url = "http://{ref_ip}/"
interval = "1s"
timeout = "800ms"

[[references]]
name = "inet-dns"
url = "http://{ref_host}/"
interval = "1s"
timeout = "800ms"
"""

START = time.time()


_LOG = threading.Lock()


def log(msg):
    with _LOG:
        sys.stdout.write(f"[vantage {time.time() - START:6.1f}s] {msg}\n")
        sys.stdout.flush()


def sh(*argv, check=True, timeout=20, env=None):
    r = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, env=env)
    if check and r.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)}: exit {r.returncode}: {r.stderr.strip()}")
    return r


def veth(ns, name, address, peer_ns, peer, peer_address):
    """A veth pair: `name` in `ns` with `address`/30, `peer` in `peer_ns` with `peer_address`/30,
    both up."""
    sh("ip", "link", "add", name, "netns", ns, "type", "veth", "peer", "name", peer,
       "netns", peer_ns)
    sh("ip", "-n", ns, "addr", "add", f"{address}/30", "dev", name)
    sh("ip", "-n", peer_ns, "addr", "add", f"{peer_address}/30", "dev", peer)
    sh("ip", "-n", ns, "link", "set", name, "up")
    sh("ip", "-n", peer_ns, "link", "set", peer, "up")


# ------------------------------------------------------------------------------------------------
# Namespaces
# ------------------------------------------------------------------------------------------------

_libc = ctypes.CDLL(None, use_errno=True)


def setns(path):
    fd = os.open(path, os.O_RDONLY)
    try:
        if _libc.setns(fd, CLONE_NEWNET) != 0:
            err = ctypes.get_errno()
            raise OSError(err, f"setns {path}: {os.strerror(err)}")
    finally:
        os.close(fd)


def remove_leftovers():
    """Namespaces of earlier runs whose process is gone (a run killed with SIGKILL)."""
    out = sh("ip", "netns", "list", check=False).stdout
    for line in out.splitlines():
        m = re.match(r"(lfm(\d+)-\w+)", line)
        if m and not os.path.exists(f"/proc/{m.group(2)}"):
            sh("ip", "netns", "del", m.group(1), check=False)
            shutil.rmtree(f"/etc/netns/{m.group(1)}", ignore_errors=True)
            log(f"removed leftover namespace {m.group(1)}")


class Topology:
    def __init__(self):
        pid = os.getpid()
        self.inet = f"lfm{pid}-inet"
        self.mon = f"lfm{pid}-mon"
        self.vns = {v: f"lfm{pid}-{v.lower()}" for v in VANTAGES}
        self.created = []
        self.root_ns = os.open("/proc/self/ns/net", os.O_RDONLY)
        self.in_mon = False

    @staticmethod
    def wan(i):
        """(internet side, vantage side) of vantage i's WAN /30."""
        return f"198.51.100.{4 * i + 1}", f"198.51.100.{4 * i + 2}"

    @staticmethod
    def lan(i):
        """(monitoring side, vantage side) of vantage i's LAN /30."""
        return f"192.0.2.{4 * i + 1}", f"192.0.2.{4 * i + 2}"

    def listen(self, v):
        return f"{self.lan(VANTAGES.index(v))[1]}:10987"

    def resolv_conf(self, v):
        return f"/etc/netns/{self.vns[v]}/resolv.conf"

    def set_resolver(self, v, ip):
        # Written in place: `ip netns exec` bind-mounted this very inode over /etc/resolv.conf,
        # and glibc re-reads the file when it changes.
        with open(self.resolv_conf(v), "w") as f:
            f.write(f"nameserver {ip}\noptions timeout:1 attempts:1\n")

    def create(self):
        for ns in [self.inet, self.mon, *self.vns.values()]:
            sh("ip", "netns", "add", ns)
            self.created.append(ns)
            sh("ip", "-n", ns, "link", "set", "lo", "up")
        for ip in (LASTFM_IP, REF_IP, DNS_IP, LIAR_DNS_IP):
            sh("ip", "-n", self.inet, "addr", "add", f"{ip}/32", "dev", "lo")
        for i, v in enumerate(VANTAGES):
            ns = self.vns[v]
            inet_side, v_side = self.wan(i)
            veth(ns, "wan", v_side, self.inet, f"wan-{v.lower()}", inet_side)
            sh("ip", "-n", ns, "route", "add", "default", "via", inet_side)
            mon_side, v_lan = self.lan(i)
            veth(ns, "lan", v_lan, self.mon, f"lan-{v.lower()}", mon_side)
            os.makedirs(f"/etc/netns/{ns}", exist_ok=True)
            self.set_resolver(v, DNS_IP)

    def enter_mon(self):
        setns(f"/run/netns/{self.mon}")
        self.in_mon = True

    def destroy(self):
        if self.in_mon:
            _libc.setns(self.root_ns, CLONE_NEWNET)
            self.in_mon = False
        for ns in reversed(self.created):
            sh("ip", "netns", "del", ns, check=False)
            shutil.rmtree(f"/etc/netns/{ns}", ignore_errors=True)
        self.created = []

    # Faults and their repair -------------------------------------------------------------------
    def wan_down(self, v):
        sh("ip", "-n", self.vns[v], "link", "set", "wan", "down")

    def wan_up(self, v):
        ns = self.vns[v]
        sh("ip", "-n", ns, "link", "set", "wan", "up")
        # A link going down takes its routes with it.
        sh("ip", "-n", ns, "route", "replace", "default", "via", self.wan(VANTAGES.index(v))[0])

    def cut_lastfm(self, v):
        sh("ip", "-n", self.vns[v], "route", "add", "unreachable", f"{LASTFM_IP}/32")

    def uncut_lastfm(self, v):
        sh("ip", "-n", self.vns[v], "route", "del", "unreachable", f"{LASTFM_IP}/32", check=False)


# ------------------------------------------------------------------------------------------------
# Processes
# ------------------------------------------------------------------------------------------------

class Procs:
    def __init__(self, work):
        self.work = work
        self.procs = {}

    def start(self, name, ns, argv, env=None):
        out = open(os.path.join(self.work, f"{name}.log"), "a")
        full = ["ip", "netns", "exec", ns, *argv] if ns else argv
        p = subprocess.Popen(full, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                             env=env or os.environ.copy(), start_new_session=True)
        self.procs[name] = p
        return p

    def stop(self, name, timeout=10):
        p = self.procs.pop(name, None)
        if p is None:
            return None
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
        try:
            return p.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait(timeout=5)
            return "killed"

    def alive(self, name):
        p = self.procs.get(name)
        return p is not None and p.poll() is None

    def stop_all(self):
        codes = {}
        for name in reversed(list(self.procs)):
            codes[name] = self.stop(name)
        return codes

    def tail(self, name, n=2500):
        try:
            with open(os.path.join(self.work, f"{name}.log"), errors="replace") as f:
                return f.read()[-n:]
        except OSError:
            return ""


# ------------------------------------------------------------------------------------------------
# The webhook receiver: every notification Alertmanager delivers
# ------------------------------------------------------------------------------------------------

class Notifications:
    def __init__(self):
        self.lock = threading.Lock()
        self.posts = []  # dicts: t, receiver, groupKey, status, alerts[]

    def add(self, receiver, payload):
        alerts = []
        for a in payload.get("alerts", []):
            labels = a.get("labels", {})
            alerts.append({
                "alertname": labels.get("alertname", ""),
                "labels": labels,
                "summary": a.get("annotations", {}).get("summary", ""),
                "status": a.get("status", ""),
                "key": alert_key(labels),
            })
        post = {"t": time.time(), "receiver": receiver, "groupKey": payload.get("groupKey", ""),
                "status": payload.get("status", ""), "alerts": alerts}
        with self.lock:
            self.posts.append(post)
        log("notification: " + ", ".join(
            f"{a['status']} {a['alertname']}{{{short_labels(a['labels'])}}}" for a in alerts)
            + f" (receiver {receiver})")

    def since(self, t0, t1=None):
        with self.lock:
            return [p for p in self.posts if p["t"] >= t0 and (t1 is None or p["t"] < t1)]

    def alerts(self, t0=0, t1=None, status=None, name=None):
        out = []
        for p in self.since(t0, t1):
            for a in p["alerts"]:
                if (status is None or a["status"] == status) and (name is None or a["alertname"] == name):
                    out.append(a)
        return out


def alert_key(labels):
    return tuple(sorted(labels.items()))


def short_labels(labels):
    keep = [k for k in ("vantage", "instance", "target", "severity") if k in labels]
    return ",".join(f"{k}={labels[k]}" for k in keep)


def start_webhook(store):
    class Hook(BaseHTTPRequestHandler):
        def do_POST(self):
            n = int(self.headers.get("Content-Length", "0"))
            body = self.rfile.read(n)
            receiver = urllib.parse.unquote(self.path.rsplit("/", 1)[-1])
            try:
                store.add(receiver, json.loads(body))
            except ValueError:
                log(f"webhook: unparseable body {body[:200]!r}")
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args):
            pass

    srv = ThreadingHTTPServer(("127.0.0.1", HOOK_PORT), Hook)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    return srv


# ------------------------------------------------------------------------------------------------
# HTTP, metrics, Prometheus
# ------------------------------------------------------------------------------------------------

def get(url, timeout=3):
    with urllib.request.urlopen(url, timeout=timeout) as r:
        return r.read().decode()


LINE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})?\s+(\S+)')
LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


def scrape(topo, v):
    """The vantage's /metrics as [(name, labels, value)]; None when it does not answer."""
    try:
        text = get(f"http://{topo.listen(v)}/metrics", timeout=2)
    except OSError:
        return None
    out = []
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        m = LINE.match(line)
        if m:
            labels = dict(LABEL.findall(m.group(3) or ""))
            try:
                out.append((m.group(1), labels, float(m.group(4))))
            except ValueError:
                pass
    return out


def pick(series, name, **match):
    """Values of `name` whose labels include `match`: {frozenset(labels): value}."""
    if series is None:
        return {}
    return {frozenset(l.items()): val for (n, l, val) in series
            if n == name and all(l.get(k) == w for k, w in match.items())}


def value(series, name, **match):
    vals = pick(series, name, **match)
    return sum(vals.values()) if vals else None


def prom_query(expr):
    url = f"{PROM}/api/v1/query?" + urllib.parse.urlencode({"query": expr})
    return json.loads(get(url))["data"]["result"]


def prom_scalar(expr):
    r = prom_query(expr)
    return float(r[0]["value"][1]) if r else None


def active_alerts():
    """Prometheus' pending and firing alerts: [(alertname, state, labels)]."""
    try:
        alerts = json.loads(get(f"{PROM}/api/v1/alerts"))["data"]["alerts"]
    except OSError:
        return None
    return [(a["labels"]["alertname"], a["state"], a["labels"]) for a in alerts]


def am_alerts():
    """Alertmanager's alerts, suppressed included: [(alertname, state, inhibitedBy, labels)]."""
    try:
        alerts = json.loads(get(f"{AM}/api/v2/alerts?active=true&silenced=true&inhibited=true"))
    except OSError:
        return None
    return [(a["labels"].get("alertname"), a["status"]["state"], a["status"].get("inhibitedBy", []),
             a["labels"]) for a in alerts]


class Deadline(Exception):
    pass


class Run:
    """Global deadline for every bounded wait."""

    def __init__(self, seconds):
        self.end = START + seconds

    def wait_for(self, what, pred, timeout, step=0.5):
        """Polls pred() until truthy; returns its value, or None after timeout (bounded by the
        run's deadline)."""
        limit = min(time.time() + timeout, self.end)
        while True:
            try:
                v = pred()
            except (OSError, ValueError, KeyError):
                v = None
            if v:
                return v
            if time.time() >= limit:
                if time.time() >= self.end:
                    raise Deadline(f"run deadline reached while waiting for {what}")
                return None
            time.sleep(step)

    def hold(self, seconds, watch=None, step=0.5):
        """Lets `seconds` pass (bounded by the deadline), calling watch() each step."""
        limit = min(time.time() + seconds, self.end)
        while time.time() < limit:
            if watch:
                try:
                    watch()
                except (OSError, ValueError, KeyError):
                    pass
            time.sleep(step)


# ------------------------------------------------------------------------------------------------
# Results
# ------------------------------------------------------------------------------------------------

ORDER = {"PASS": 0, "WAIT": 1, "FAIL": 2}


class Phase:
    def __init__(self, num, title, features):
        self.num, self.title, self.features = num, title, features
        self.status = "PASS"
        self.lines = []
        self.forbids = []
        self.t0 = time.time()
        self.t1 = None

    def _set(self, status):
        if ORDER[status] > ORDER[self.status]:
            self.status = status

    def check(self, cond, msg, needs=()):
        """Records one assertion. needs: feature keys; a missing one makes the result WAIT (it
        cannot be asserted yet)."""
        missing = [n for n in needs if self.features.get(n, "missing") == "missing"]
        if missing:
            status, why = "WAIT", f" [needs {', '.join(missing)}]"
        elif not cond:
            status, why = "FAIL", ""
        else:
            status, why = "PASS", ""
        self._set(status)
        self.lines.append(f"{status:4} {msg}{why}")
        log(f"  phase {self.num}: {status} {msg}{why}")
        return cond

    def info(self, msg):
        self.lines.append(f"     {msg}")
        log(f"  phase {self.num}: {msg}")

    def fail(self, msg):
        self.check(False, msg)


# ------------------------------------------------------------------------------------------------
# Configuration: shipped files, rewritten timings only
# ------------------------------------------------------------------------------------------------

def seconds_of(d):
    m = re.fullmatch(r"((\d+)h)?((\d+)m(?!s))?((\d+)s)?((\d+)ms)?", str(d).strip())
    if not m:
        raise ValueError(f"duration {d!r}")
    h, mi, s, ms = (int(m.group(i) or 0) for i in (2, 4, 6, 8))
    return h * 3600 + mi * 60 + s + ms / 1000


def rewrite_rules(features, args, work):
    """The shipped rules with every group evaluated every second and every `for:` (and
    `keep_firing_for:`) divided by args.for_scale, at least args.min_for seconds, so the shipped
    order between alerts holds (the quorum alert before the per-vantage one). Durations inside
    expressions (offset, range selectors) stay as shipped. Returns the file and
    {alert: rewritten for, seconds}."""
    with open(args.rules) as f:
        rules = yaml.safe_load(f)
    shipped = {r["alert"] for g in rules["groups"] for r in g["rules"] if "alert" in r}
    # The error-budget alerts judge hours to days (their shortest window pair is 1 h and 5 m), so
    # on this run's minutes they fire at the first outage and stay until the run ends, where every
    # phase here expects each alert to resolve within 40 s. They are proven by `promtool test
    # rules` (a fast burn, a slow burn, a blip) and against a real Prometheus by dashboards/e2e.py;
    # left out here, the quorum and inhibition this test is about stay readable.
    budget = {name for name in shipped if name.startswith("LastfmErrorBudgetBurn")}
    for g in rules["groups"]:
        g["rules"] = [r for r in g["rules"] if r.get("alert") not in budget]
    if budget:
        log(f"rules: left out {sorted(budget)} (error budgets: hours-to-days windows)")
    shipped -= budget
    for name in WATCHED:
        features[f"rule:{name}"] = "shipped" if name in shipped else "missing"
    fors = {}
    for g in rules["groups"]:
        g["interval"] = "1s"
        for r in g["rules"]:
            if "alert" in r:
                new = max(args.min_for, round(seconds_of(r.get("for", "0s")) / args.for_scale))
                fors[r["alert"]] = new
                r["for"] = f"{new}s"
                if "keep_firing_for" in r:
                    keep = max(1, round(seconds_of(r["keep_firing_for"]) / args.for_scale))
                    r["keep_firing_for"] = f"{keep}s"
    path = os.path.join(work, "rules.yml")
    with open(path, "w") as f:
        yaml.safe_dump(rules, f, sort_keys=False)
    log(f"rules: {len(shipped)} alerts; for: rewritten to {fors} (seconds)")
    return path, fors


def rewrite_alertmanager(features, args, work):
    """The shipped Alertmanager config with fast group timings and every receiver delivering to
    the webhook (path /hook/<receiver>); inhibit rules and routing as shipped."""
    src = args.alertmanager_config
    features["alertmanager.yml"] = "shipped" if os.path.exists(src) else "missing"
    if not os.path.exists(src):
        raise RuntimeError(f"{src} is missing: the test delivers through the shipped Alertmanager config")
    with open(src) as f:
        cfg = yaml.safe_load(f)

    def fix(route, root):
        if root or "group_wait" in route:
            route["group_wait"] = f"{args.group_wait}s"
        if root or "group_interval" in route:
            route["group_interval"] = f"{args.group_interval}s"
        if root or "repeat_interval" in route:
            route["repeat_interval"] = "1h"
        for child in route.get("routes", []) or []:
            fix(child, False)

    fix(cfg["route"], True)
    for rc in cfg.get("receivers", []):
        for k in [k for k in rc if k.endswith("_configs")]:
            del rc[k]
        rc["webhook_configs"] = [{
            "url": f"http://127.0.0.1:{HOOK_PORT}/hook/{urllib.parse.quote(rc['name'], safe='')}",
            "send_resolved": True}]
    # Templates are resolved against the shipped file's folder.
    base = os.path.dirname(src)
    cfg["templates"] = [t if os.path.isabs(t) else os.path.join(base, t)
                        for t in cfg.get("templates", []) or []]
    path = os.path.join(work, "alertmanager.yml")
    with open(path, "w") as f:
        yaml.safe_dump(cfg, f, sort_keys=False)
    log(f"alertmanager: {src} ({features['alertmanager.yml']}), group_wait {args.group_wait}s, "
        f"group_interval {args.group_interval}s, {len(cfg.get('inhibit_rules', []) or [])} inhibit rules")
    return path


CENTRAL = os.path.join(HERE, "prometheus", "central.yml")
AGENT = os.path.join(HERE, "prometheus", "agent-vantage.yml")


def prometheus_config(topo, rules, work, agents):
    """The shipped central.yml with 1 s timings, the rewritten rules and the test's Alertmanager.
    Without agents its lastfm-monitor job scrapes the three vantages over their LAN links (one
    static_configs entry each, with its `vantage` label); with agents the job is dropped (every
    site has its agent) and the samples arrive by remote write."""
    with open(CENTRAL) as f:
        cfg = yaml.safe_load(f)
    cfg["global"] = {"scrape_interval": "1s", "scrape_timeout": "900ms", "evaluation_interval": "1s"}
    cfg["rule_files"] = [rules]
    cfg["alerting"] = {"alertmanagers": [{"static_configs": [{"targets": ["127.0.0.1:9093"]}]}]}
    jobs = [j for j in cfg.get("scrape_configs", []) if j.get("job_name") == "lastfm-monitor"]
    if not jobs:
        raise RuntimeError(f"{CENTRAL} has no lastfm-monitor job")
    job = jobs[0]
    job["scrape_interval"], job["scrape_timeout"] = "1s", "900ms"
    job["static_configs"] = [{"targets": [topo.listen(v)], "labels": {"vantage": v}} for v in VANTAGES]
    cfg["scrape_configs"] = [] if agents else [job]
    path = os.path.join(work, "prometheus.yml")
    with open(path, "w") as f:
        yaml.safe_dump(cfg, f, sort_keys=False)
    return path


def agent_config(topo, v, work):
    """The shipped agent-vantage.yml for vantage v: its scrape target the local daemon, its
    `vantage` label v, remote write to the central Prometheus over the LAN link, 1 s timings; the
    placeholder credentials dropped (plain HTTP inside the test's namespaces)."""
    with open(AGENT) as f:
        cfg = yaml.safe_load(f)
    cfg["global"] = {"scrape_interval": "1s", "scrape_timeout": "900ms"}
    job = [j for j in cfg["scrape_configs"] if j.get("job_name") == "lastfm-monitor"][0]
    job.pop("scrape_interval", None)
    job.pop("scrape_timeout", None)
    job["static_configs"] = [{"targets": [topo.listen(v)], "labels": {"vantage": v}}]
    cfg["scrape_configs"] = [job]
    rw = cfg["remote_write"][0]
    rw["url"] = f"http://{topo.lan(VANTAGES.index(v))[0]}:9090/api/v1/write"
    rw.pop("basic_auth", None)
    rw.setdefault("queue_config", {})["batch_send_deadline"] = "500ms"
    cfg["remote_write"] = [rw]
    path = os.path.join(work, f"agent-{v}.yml")
    with open(path, "w") as f:
        yaml.safe_dump(cfg, f, sort_keys=False)
    return path


def make_certificates(work):
    """A CA and two certificates for ws.lastfm.test signed by it, fresh for this run: one valid
    90 days ("long"), one expiring in 7 days ("short", for LastfmCertificateExpiringSoon).
    Returns {"ca": path, "long": (cert, key, notAfter unix), "short": (...)}."""
    ca_key, ca = os.path.join(work, "ca.key"), os.path.join(work, "ca.pem")
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    sh("openssl", "req", "-x509", *ec, "-keyout", ca_key, "-out", ca, "-days", "90",
       "-subj", "/CN=lastfm-monitor e2e CA", "-addext", "basicConstraints=critical,CA:TRUE",
       "-addext", "keyUsage=critical,keyCertSign,cRLSign")
    ext = os.path.join(work, "leaf.ext")
    with open(ext, "w") as f:
        f.write(f"subjectAltName=DNS:{LASTFM_HOST}\nbasicConstraints=CA:FALSE\n"
                "keyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\n")
    out = {"ca": ca}
    for name, days in (("long", 90), ("short", 7)):
        key, csr, crt = (os.path.join(work, f"{name}.{x}") for x in ("key", "csr", "pem"))
        sh("openssl", "req", *ec, "-keyout", key, "-out", csr, "-subj", f"/CN={LASTFM_HOST}")
        sh("openssl", "x509", "-req", "-in", csr, "-CA", ca, "-CAkey", ca_key, "-CAcreateserial",
           "-out", crt, "-days", str(days), "-extfile", ext)
        end = sh("openssl", "x509", "-in", crt, "-noout", "-enddate").stdout.strip().split("=", 1)[1]
        out[name] = (crt, key, int(ssl.cert_time_to_seconds(end)))
    return out


# ------------------------------------------------------------------------------------------------
# The test
# ------------------------------------------------------------------------------------------------

class E2E:
    def __init__(self, args, topo, procs, work):
        self.args, self.topo, self.procs, self.work = args, topo, procs, work
        self.run = Run(args.deadline)
        self.notes = Notifications()
        self.features = {}
        self.phases = []
        self.fired = {}  # alert key -> first firing notification (alert dict)

    # -- set-up ---------------------------------------------------------------------------------
    def daemon_config(self, v, references):
        text = DAEMON_CONFIG.format(listen=self.topo.listen(v), target=TARGET, host=LASTFM_HOST)
        if references:
            text += REFERENCES_CONFIG.format(ref_ip=REF_IP, ref_host=REF_HOST)
        path = os.path.join(self.work, f"config-{v}.toml")
        with open(path, "w") as f:
            f.write(text)
        return path

    def detect_references(self):
        path = self.daemon_config("A", True)
        r = sh(self.args.binary, "--config.file", path, "--config.check", check=False, timeout=30,
               env=dict(os.environ, LASTFM_API_KEY=API_KEY))
        ok = r.returncode == 0
        self.features["config:references"] = "shipped" if ok else "missing"
        if not ok:
            first = (r.stderr.strip() or r.stdout.strip()).splitlines()[:2]
            log(f"the daemon refuses [[references]] (exit {r.returncode}): {' | '.join(first)}; "
                "running without references, the phases that need them WAIT")
        return ok

    def start(self):
        a = self.args
        self.certs = make_certificates(self.work)
        ca = self.certs["ca"]
        self.frontdoor_cert = os.path.join(self.work, "frontdoor.pem")
        self.frontdoor_key = os.path.join(self.work, "frontdoor.key")
        self.use_certificate("long")
        inet = self.topo.inet
        dnsmasq = ["/usr/sbin/dnsmasq", "--keep-in-foreground", "--conf-file=/dev/null",
                   "--no-resolv", "--no-hosts", "--bind-interfaces", "--pid-file",
                   "--log-facility=-", "--log-queries", "--local-ttl=0", "--user=root"]
        self.procs.start("dns", inet, dnsmasq + [
            f"--listen-address={DNS_IP}", f"--host-record={LASTFM_HOST},{LASTFM_IP}",
            f"--host-record={REF_HOST},{REF_IP}", "--local=/lastfm.test/"])
        self.procs.start("dns-liar", inet, dnsmasq + [
            f"--listen-address={LIAR_DNS_IP}", "--address=/lastfm.test/"])
        for name, port in SIM_PORTS.items():
            self.procs.start(f"sim-{name}", inet, [
                a.binary, "simulate", "--listen", f"127.0.0.1:{port}",
                "--scenario", os.path.join(FIX, f"{name}.toml")])
        self.backend_file = os.path.join(self.work, "backend")
        self.set_backend("healthy")
        self.tls_argv = [sys.executable, os.path.join(FIX, "tlsproxy.py"), "--listen",
                         f"{LASTFM_IP}:443", "--cert", self.frontdoor_cert, "--key", self.frontdoor_key,
                         "--backend-file", self.backend_file]
        self.procs.start("lastfm-frontdoor", inet, self.tls_argv)
        www = os.path.join(self.work, "www")
        os.makedirs(www, exist_ok=True)
        with open(os.path.join(www, "index.html"), "w") as f:
            f.write("reference\n")
        self.procs.start("reference", inet, [sys.executable, "-m", "http.server", "80", "--bind",
                                             REF_IP, "--directory", www])

        # "The internet" answers before any monitor starts: names, Last.fm's door, the reference.
        for kind, host, port, want in (("resolve", LASTFM_HOST, 443, LASTFM_IP),
                                       ("resolve", REF_HOST, 80, REF_IP),
                                       ("connect", LASTFM_IP, 443, "connected"),
                                       ("connect", REF_IP, 80, "connected")):
            if not self.run.wait_for(f"{kind} {host}", lambda: self.from_vantage(
                    "A", kind, host, port)[0] == want, 15, step=0.2):
                raise RuntimeError(f"{kind} {host}:{port} from A: {self.from_vantage('A', kind, host, port)}")
        refs = self.detect_references()
        env = dict(os.environ, LASTFM_API_KEY=API_KEY, SSL_CERT_FILE=ca,
                   RUST_LOG=os.environ.get("RUST_LOG", "info"))
        env.pop("SSL_CERT_DIR", None)
        for v in VANTAGES:
            self.procs.start(f"daemon-{v}", self.topo.vns[v], [
                a.binary, "--config.file", self.daemon_config(v, refs)], env=env)

        rules, self.fors = rewrite_rules(self.features, a, self.work)
        amcfg = rewrite_alertmanager(self.features, a, self.work)
        promcfg = prometheus_config(self.topo, rules, self.work, a.agents)
        sh("promtool", "check", "rules", rules, timeout=60)
        sh("amtool", "check-config", amcfg, timeout=60)
        mon = self.topo.mon
        self.procs.start("alertmanager", mon, [
            "/usr/bin/prometheus-alertmanager", f"--config.file={amcfg}",
            f"--storage.path={self.work}/am", "--web.listen-address=127.0.0.1:9093",
            "--cluster.listen-address="])
        sh("promtool", "check", "config", promcfg, timeout=60)
        if a.agents:
            # Central: reachable from the agents over the LAN links (the monitoring namespace
            # has nothing else), receives remote write.
            self.procs.start("prometheus", mon, [
                a.prometheus, f"--config.file={promcfg}", f"--storage.tsdb.path={self.work}/prom",
                "--web.listen-address=0.0.0.0:9090", "--web.enable-remote-write-receiver"])
            for v in VANTAGES:
                cfg = agent_config(self.topo, v, self.work)
                sh("promtool", "check", "config", "--agent", cfg, timeout=60)
                self.procs.start(f"agent-{v}", self.topo.vns[v], [
                    a.prometheus, "--enable-feature=agent", f"--config.file={cfg}",
                    f"--storage.agent.path={self.work}/agent-{v}",
                    "--web.listen-address=127.0.0.1:9090"])
        else:
            self.procs.start("prometheus", mon, [
                a.prometheus, f"--config.file={promcfg}", f"--storage.tsdb.path={self.work}/prom",
                "--web.listen-address=127.0.0.1:9090"])

        # From here on this process lives in the monitoring namespace (127.0.0.1 there).
        self.topo.enter_mon()
        self.hook = start_webhook(self.notes)

        w = self.run.wait_for
        for v in VANTAGES:
            if not w(f"daemon {v}", lambda: get(f"http://{self.topo.listen(v)}/-/ready", 1) is not None, 30):
                raise RuntimeError(f"daemon {v} did not become ready at {self.topo.listen(v)}")
        if not w("Prometheus", lambda: get(f"{PROM}/-/ready", 1), 30):
            raise RuntimeError("Prometheus did not become ready")
        if not w("Alertmanager", lambda: get(f"{AM}/-/ready", 1), 30):
            raise RuntimeError("Alertmanager did not become ready")
        if not w("Prometheus to discover Alertmanager", lambda: json.loads(
                get(f"{PROM}/api/v1/alertmanagers"))["data"]["activeAlertmanagers"], 20):
            raise RuntimeError("Prometheus has no active Alertmanager")
        if not w("three vantages scraped", lambda: prom_scalar('count(up{job="lastfm-monitor"} == 1)') == 3, 30):
            raise RuntimeError("Prometheus does not scrape the three vantages: "
                               f"{prom_query('up')}")
        # Daemon metrics: which of the new ones exist.
        series = scrape(self.topo, "A")
        names = {n for (n, _, _) in series or []}
        for m in ("lastfm_reference_up", "lastfm_reference_failures_total",
                  "lastfm_tls_certificate_not_after_timestamp_seconds",
                  "lastfm_probe_failures_total", "lastfm_probe_phase_duration_seconds"):
            self.features[f"metric:{m}"] = "shipped" if any(n.startswith(m) for n in names) else "missing"
        self.features["metric:local_network_down"] = "shipped" if pick(
            series, "lastfm_condition", condition="local_network_down") else "missing"
        log("features: " + ", ".join(f"{k}={v}" for k, v in sorted(self.features.items())))

    SELF_CHECK = (
        "import errno, socket, sys\n"
        "kind, host, port = sys.argv[1], sys.argv[2], int(sys.argv[3])\n"
        "try:\n"
        "    if kind == 'resolve':\n"
        "        print(socket.getaddrinfo(host, port, socket.AF_INET)[0][4][0])\n"
        "    else:\n"
        "        socket.create_connection((host, port), timeout=2).close(); print('connected')\n"
        "except socket.gaierror as e:\n"
        "    print('gaierror', e.args[1])\n"
        "except OSError as e:\n"
        "    print(errno.errorcode.get(e.errno, 'timeout' if isinstance(e, socket.timeout) else str(e)))\n")

    def from_vantage(self, v, kind, host, port):
        """The fault as a plain program on vantage v sees it: 'connected', an errno name
        (ECONNREFUSED, EHOSTUNREACH, ENETUNREACH), an address, or 'gaierror <message>'."""
        r = sh("ip", "netns", "exec", self.topo.vns[v], sys.executable, "-c", self.SELF_CHECK,
               kind, host, str(port), check=False, timeout=15)
        return (r.stdout.strip() or r.stderr.strip()).splitlines()[-1:] or ["?"]

    def injected(self, ph, v, kind, host, port, want):
        got = self.from_vantage(v, kind, host, port)[0]
        ph.check(got.startswith(want), f"fault injected: {kind} {host}:{port} from {v} -> {got}")

    def use_certificate(self, name):
        """The front door's certificate: "long" or "short"; a running front door reloads it."""
        crt, key, _ = self.certs[name]
        shutil.copyfile(key, self.frontdoor_key)
        shutil.copyfile(crt, self.frontdoor_cert)
        p = self.procs.procs.get("lastfm-frontdoor")
        if p is not None and p.poll() is None:
            p.send_signal(signal.SIGHUP)

    def set_backend(self, name):
        tmp = self.backend_file + ".tmp"
        with open(tmp, "w") as f:
            f.write(f"127.0.0.1:{SIM_PORTS[name]}\n")
        os.replace(tmp, self.backend_file)

    # -- observations ---------------------------------------------------------------------------
    def all_series(self):
        return {v: scrape(self.topo, v) for v in VANTAGES}

    def healthy(self, why):
        """Every vantage: available, no condition raised, references up (when they exist),
        daemons alive. Fills `why` with what is not yet so."""
        why.clear()
        for v, s in self.all_series().items():
            if s is None:
                why.append(f"{v}: /metrics does not answer")
                continue
            if value(s, "lastfm_service_available", target=TARGET) != 1:
                why.append(f"{v}: lastfm_service_available != 1")
            raised = [dict(l)["condition"] for l, x in pick(s, "lastfm_condition", target=TARGET).items() if x]
            if raised:
                why.append(f"{v}: conditions {raised}")
            if self.features.get("metric:lastfm_reference_up") == "shipped":
                for r in REFERENCES:
                    if value(s, "lastfm_reference_up", reference=r) != 1:
                        why.append(f"{v}: reference {r} not up")
        return not why

    def note_fired(self):
        for a in self.notes.alerts(status="firing"):
            self.fired.setdefault(a["key"], a)

    def unresolved(self):
        self.note_fired()
        resolved = {a["key"] for a in self.notes.alerts(status="resolved")}
        return [a for k, a in self.fired.items() if k not in resolved]

    def delivered(self, t0, name, **labels):
        """Firing notifications of `name` since t0 whose labels include `labels` (exactly: a
        per-vantage alert must carry its `vantage` label)."""
        return [a for a in self.notes.alerts(t0, status="firing", name=name)
                if all(a["labels"].get(k) == want for k, want in labels.items())]

    def expect_delivered(self, ph, t0, name, timeout, needs=(), **labels):
        desc = f"{name}{{{','.join(f'{k}={v}' for k, v in labels.items())}}}"
        seen = {}

        def poll():
            # When Prometheus first had it pending and firing: where a slow delivery's time went.
            for (n, state, l) in active_alerts() or []:
                if n == name and all(l.get(k) == w for k, w in labels.items()):
                    seen.setdefault(state, time.time())
            return self.delivered(t0, name, **labels)
        got = self.run.wait_for(f"{desc} delivered", poll, timeout)
        needs = [f"rule:{name}", "alertmanager.yml", *needs]
        when = ", ".join(f"{st} at {seen[st] - t0:.1f}s" for st in ("pending", "firing") if st in seen)
        if got:
            a = got[0]
            ph.check(True, f"{desc} delivered after {self.first_t(t0, name, labels) - t0:.1f}s "
                           f"({when or 'seen by Prometheus too briefly to poll'}): "
                           f"{short_labels(a['labels'])} summary={a['summary']!r}", needs)
            ph.check(bool(a["summary"]), f"{name} carries annotations.summary", needs)
        else:
            seen = sorted({f"{a['alertname']}{{{short_labels(a['labels'])}}}"
                           for a in self.notes.alerts(t0, status='firing')})
            pend = sorted({f"{n}:{s}" for (n, s, _) in active_alerts() or []})
            ph.check(False, f"{desc} not delivered within {timeout}s (delivered: {seen or 'none'}; "
                            f"Prometheus alerts: {pend or 'none'})", needs)
        return got

    def first_t(self, t0, name, labels):
        for p in self.notes.since(t0):
            for a in p["alerts"]:
                if a["status"] == "firing" and a["alertname"] == name and a in self.delivered(t0, name, **labels):
                    return p["t"]
        return time.time()

    def forbid(self, ph, t0, allowed, what):
        """No firing notification since t0 except those allowed(alert) accepts. settle() asks
        again once the fault is repaired and everything has recovered: a warning held back
        during the fault must not be delivered on the way out either."""
        bad = self.forbidden(t0, allowed)
        ph.check(not bad, f"{what}: {'delivered ' + ', '.join(bad) if bad else 'none delivered'}",
                 ["alertmanager.yml"])
        ph.forbids.append((t0, allowed, what, bad))

    def forbidden(self, t0, allowed):
        return sorted({f"{a['alertname']}{{{short_labels(a['labels'])}}}"
                       for a in self.notes.alerts(t0, status="firing") if not allowed(a)})

    def vantage_of(self, a):
        if "vantage" in a["labels"]:
            return a["labels"]["vantage"]
        for v in VANTAGES:
            if a["labels"].get("instance") == self.topo.listen(v):
                return v
        return None

    def settle(self, ph, what):
        """After a repair: healthy monitors, nothing pending or firing, every fired alert resolved
        and delivered as such. Bounded."""
        t = time.time()
        why = []
        ok = self.run.wait_for(f"recovery from {what}", lambda: self.healthy(why), self.args.settle)
        if not ok:
            ph.fail(f"monitors did not recover within {self.args.settle}s after {what}: {why}")
        ok = self.run.wait_for("no alert pending or firing", lambda: active_alerts() == [],
                               self.args.settle)
        if not ok:
            ph.fail(f"alerts still pending or firing {self.args.settle}s after {what}: "
                    f"{sorted({(n, s) for (n, s, _) in active_alerts() or []})}")
        ok = self.run.wait_for("resolved notifications", lambda: not self.unresolved(), self.args.settle)
        if not ok:
            ph.fail("no resolved notification for " + ", ".join(
                f"{a['alertname']}{{{short_labels(a['labels'])}}}" for a in self.unresolved()))
        ph.info(f"recovered from {what} in {time.time() - t:.1f}s")
        for (t0, allowed, which, before) in ph.forbids:
            new = [b for b in self.forbidden(t0, allowed) if b not in before]
            ph.check(not new, f"{which}, through the recovery: "
                     f"{'delivered ' + ', '.join(new) if new else 'none delivered'}", ["alertmanager.yml"])

    def failures(self, series):
        """lastfm_probe_failures_total of the target: {(probe, phase, reason): count}."""
        out = {}
        for l, x in pick(series, "lastfm_probe_failures_total", target=TARGET).items():
            d = dict(l)
            out[(d.get("probe"), d.get("phase"), d.get("reason"))] = x
        return out

    def ref_failures(self, series):
        out = {}
        for l, x in pick(series, "lastfm_reference_failures_total").items():
            d = dict(l)
            out[(d.get("reference"), d.get("phase"), d.get("reason"))] = x
        return out

    @staticmethod
    def grown(before, after):
        return {k: after[k] - before.get(k, 0) for k in after if after[k] > before.get(k, 0)}

    def max_over(self, expr, t0):
        window = max(2, int(time.time() - t0) + 1)
        return prom_scalar(f"max_over_time(({expr})[{window}s:1s])")

    def min_over(self, expr, t0):
        window = max(2, int(time.time() - t0) + 1)
        return prom_scalar(f"min_over_time(({expr})[{window}s:1s])")

    # -- phases ---------------------------------------------------------------------------------
    def phase(self, num, title):
        ph = Phase(num, title, self.features)
        self.phases.append(ph)
        log(f"=== phase {num}: {title}")
        return ph

    def hold_from(self, t0, watch=None):
        """Lets an alert that must not fire show that it does not: from the fault's start t0,
        the longest rewritten `for:` of the alerts under test, the daemon's hysteresis
        (down_after 2 runs of 2 s), a scrape and an evaluation, group_wait, and a margin; at
        least 3 s from now."""
        longest = max(self.fors.get(n, 0) for n in WATCHED)
        until = max(t0 + longest + 4 + 2 + self.args.group_wait + 3, time.time() + 3)
        self.run.hold(until - time.time(), watch)

    def p1_healthy(self):
        ph = self.phase(1, "healthy: nothing delivered")
        why = []
        ok = self.run.wait_for("all vantages healthy", lambda: self.healthy(why), 40)
        ph.check(bool(ok), f"every vantage available, no condition, references up {why or ''}")
        self.hold_from(time.time())
        ph.check(not self.notes.since(0), f"no notification delivered "
                 f"({len(self.notes.since(0))} POSTs)", ["alertmanager.yml"])
        s = self.all_series()
        for v in VANTAGES:
            ph.check(value(s[v], "lastfm_condition", target=TARGET, condition="local_network_down") == 0,
                     f"{v}: local_network_down = 0", ["metric:local_network_down"])
            ph.check(all(value(s[v], "lastfm_reference_up", reference=r) == 1 for r in REFERENCES),
                     f"{v}: every reference up", ["config:references", "metric:lastfm_reference_up"])
            slow = [f"{probe}/{phase}" for probe in PROBES for phase in ("dns", "connect", "tls", "first_byte")
                    if not (value(s[v], "lastfm_probe_phase_duration_seconds", target=TARGET,
                                  probe=probe, phase=phase) or 0) > 0]
            ph.check(not slow, f"{v}: the last runs timed dns, connect, tls and first_byte "
                     f"(fresh connection, real resolver, real handshake) {slow or ''}",
                     ["metric:lastfm_probe_phase_duration_seconds"])
            na = value(s[v], "lastfm_tls_certificate_not_after_timestamp_seconds", target=TARGET)
            ph.check(na == self.certs["long"][2], f"{v}: lastfm_tls_certificate_not_after_timestamp_seconds "
                     f"is the front door's notAfter ({na} vs {self.certs['long'][2]})",
                     ["metric:lastfm_tls_certificate_not_after_timestamp_seconds"])
        ph.t1 = time.time()

    def p2_wan_down(self):
        ph = self.phase(2, "B's WAN link down: B's own network, no Last.fm alert")
        t0 = time.time()
        self.topo.wan_down("B")
        try:
            self.injected(ph, "B", "connect", REF_IP, 80, "ENETUNREACH")
            self.injected(ph, "A", "connect", REF_IP, 80, "connected")
            ok = self.run.wait_for("B local_network_down", lambda: value(
                scrape(self.topo, "B"), "lastfm_condition", target=TARGET,
                condition="local_network_down") == 1, 25)
            ph.check(bool(ok), "B: lastfm_condition{condition=local_network_down} = 1",
                     ["metric:local_network_down", "config:references"])
            got = self.expect_delivered(ph, t0, "LastfmMonitorNetworkDown", 35, vantage="B")
            self.hold_from(t0)
            s = scrape(self.topo, "B")
            ph.check(all(value(s, "lastfm_reference_up", reference=r) == 0 for r in REFERENCES),
                     "B: every reference down", ["config:references", "metric:lastfm_reference_up"])
            lowest = self.min_over(f'lastfm_service_available{{vantage="B",target="{TARGET}"}}', t0)
            ph.check(lowest == 1, f"B: lastfm_service_available never 0 during the outage "
                     f"(min {lowest})", ["metric:local_network_down"])
            self.forbid(ph, t0, lambda a: a["alertname"] == "LastfmMonitorNetworkDown"
                        and self.vantage_of(a) == "B", "no other alert (no Last.fm alert)")
            others = [v for v in ("A", "C")
                      if self.max_over(f'lastfm_condition{{vantage="{v}",condition="local_network_down"}}', t0) not in (0, None)]
            ph.check(not others, f"A and C never local_network_down ({others or 'none'})",
                     ["metric:local_network_down"])
        finally:
            ph.t1 = time.time()
            self.topo.wan_up("B")
        self.settle(ph, "B's WAN link down")

    def p3_resolver(self):
        ph = self.phase(3, "C's resolver answers NXDOMAIN: failures at phase dns only")
        before = {v: self.failures(s) for v, s in self.all_series().items()}
        rbefore = self.ref_failures(scrape(self.topo, "C"))
        t0 = time.time()
        self.topo.set_resolver("C", LIAR_DNS_IP)
        try:
            self.injected(ph, "C", "resolve", LASTFM_HOST, 443, "gaierror")
            self.injected(ph, "A", "resolve", LASTFM_HOST, 443, LASTFM_IP)
            def dns_grew():
                g = self.grown(before["C"], self.failures(scrape(self.topo, "C")))
                return sum(n for (_, phase, _), n in g.items() if phase == "dns") >= 2
            ok = self.run.wait_for("C dns failures", dns_grew, 20)
            ph.check(bool(ok), "C: lastfm_probe_failures_total{phase=dns} grows",
                     ["metric:lastfm_probe_failures_total"])
            self.hold_from(t0)
            after = self.all_series()
            g = self.grown(before["C"], self.failures(after["C"]))
            ph.info(f"C failures grown: {g}")
            ph.check(bool(g) and all(ph_ == "dns" and r == "nxdomain" for (_, ph_, r) in g),
                     f"C: only phase=dns reason=nxdomain grew ({sorted(set((p, r) for (_, p, r) in g))})",
                     ["metric:lastfm_probe_failures_total"])
            dns_probes = sorted({p for (p, phase, _) in g if phase == "dns"})
            ph.check(dns_probes == sorted(PROBES), f"C: every probe failed at dns ({dns_probes})",
                     ["metric:lastfm_probe_failures_total"])
            for v in ("A", "B"):
                gv = self.grown(before[v], self.failures(after[v]))
                ph.check(not gv, f"{v}: no probe failure ({gv or 'none'})",
                         ["metric:lastfm_probe_failures_total"])
            sc = after["C"]
            ph.check(value(sc, "lastfm_reference_up", reference="inet-ip") == 1
                     and value(sc, "lastfm_reference_up", reference="inet-dns") == 0,
                     "C: reference by address up, reference by name down",
                     ["config:references", "metric:lastfm_reference_up"])
            rg = self.grown(rbefore, self.ref_failures(sc))
            ph.check(bool(rg) and all(k[0] == "inet-dns" and k[1] == "dns" and k[2] == "nxdomain" for k in rg),
                     f"C: lastfm_reference_failures_total grew only for inet-dns at dns/nxdomain ({rg})",
                     ["config:references", "metric:lastfm_reference_failures_total"])
            top = self.max_over(f'lastfm_condition{{vantage="C",condition="local_network_down"}}', t0)
            ph.check(top == 0, f"C: not local_network_down (a reference still answers) (max {top})",
                     ["metric:local_network_down"])
            self.forbid(ph, t0, lambda a: a["alertname"] == "LastfmUnreachableFromVantage"
                        and self.vantage_of(a) == "C",
                        "no alert but LastfmUnreachableFromVantage{vantage=C}")
            c = self.delivered(t0, "LastfmUnreachableFromVantage", vantage="C")
            ph.info(f"LastfmUnreachableFromVantage{{vantage=C}} delivered: {bool(c)}"
                    + (f" summary={c[0]['summary']!r}" if c else ""))
        finally:
            ph.t1 = time.time()
            self.topo.set_resolver("C", DNS_IP)
        self.settle(ph, "C's lying resolver")

    def p4_offline(self):
        ph = self.phase(4, "error 11 for every vantage: one LastfmServiceOffline group")
        t0 = time.time()
        self.set_backend("offline")
        try:
            self.expect_delivered(ph, t0, "LastfmServiceOffline", 30, target=TARGET)
            self.run.wait_for("every vantage in service_offline", lambda: all(
                value(s, "lastfm_condition", target=TARGET, condition="service_offline") == 1
                for s in self.all_series().values()), 15)
            self.hold_from(t0)
            posts = [p for p in self.notes.since(t0)
                     if any(a["alertname"] == "LastfmServiceOffline" for a in p["alerts"])]
            firing = [p for p in posts if any(a["alertname"] == "LastfmServiceOffline"
                                              and a["status"] == "firing" for a in p["alerts"])]
            keys = sorted({p["groupKey"] for p in firing})
            needs = ["rule:LastfmServiceOffline", "alertmanager.yml"]
            ph.check(len(keys) == 1, f"one notification group for target {TARGET}: {keys}", needs)
            ph.check(len(firing) == 1, f"one firing POST for the group ({len(firing)})", needs)
            if firing:
                wit = sorted({self.vantage_of(a) or "-" for a in firing[0]["alerts"]
                              if a["alertname"] == "LastfmServiceOffline"})
                ph.info(f"the group's alerts: {len(firing[0]['alerts'])}, vantages {wit}, "
                        f"summary {firing[0]['alerts'][0]['summary']!r}")
            self.forbid(ph, t0, lambda a: a["alertname"] in ("LastfmServiceOffline", "LastfmTargetUnavailable"),
                        "no alert but LastfmServiceOffline (and the quorum LastfmTargetUnavailable)")
            top = max((self.max_over(f'lastfm_condition{{vantage="{v}",condition="local_network_down"}}', t0) or 0)
                      for v in VANTAGES)
            ph.check(top == 0, "no vantage local_network_down", ["metric:local_network_down"])
        finally:
            ph.t1 = time.time()
            self.set_backend("healthy")
        self.settle(ph, "error 11")

    def p4b_certificate(self):
        ph = self.phase("4b", "Last.fm's certificate expires in 7 days: one expiry group")
        cert = ["metric:lastfm_tls_certificate_not_after_timestamp_seconds"]
        if self.features.get(cert[0]) == "missing":
            ph.check(False, "skipped: the daemon exports no certificate expiry yet", cert)
            ph.t1 = time.time()
            return
        t0 = time.time()
        self.use_certificate("short")
        try:
            want = self.certs["short"][2]
            ok = self.run.wait_for("the short certificate seen", lambda: all(
                value(x, "lastfm_tls_certificate_not_after_timestamp_seconds", target=TARGET) == want
                for x in self.all_series().values()), 15)
            ph.check(bool(ok), "every vantage exports the new certificate's notAfter",
                     ["metric:lastfm_tls_certificate_not_after_timestamp_seconds"])
            self.expect_delivered(ph, t0, "LastfmCertificateExpiringSoon", 40, needs=cert, target=TARGET)
            self.run.wait_for("every vantage's expiry alert", lambda: len({
                self.vantage_of(a) for a in self.delivered(t0, "LastfmCertificateExpiringSoon")}) == 3, 10)
            self.hold_from(t0)
            firing = [p for p in self.notes.since(t0) if any(
                a["alertname"] == "LastfmCertificateExpiringSoon" and a["status"] == "firing"
                for a in p["alerts"])]
            keys = sorted({p["groupKey"] for p in firing})
            ph.check(len(keys) == 1, f"one notification group for the target ({keys})",
                     ["rule:LastfmCertificateExpiringSoon", "alertmanager.yml", *cert])
            wit = sorted({self.vantage_of(a) or "-" for p in firing for a in p["alerts"]})
            ph.info(f"{len(firing)} firing POST(s), vantages {wit}")
            self.forbid(ph, t0, lambda a: a["alertname"] == "LastfmCertificateExpiringSoon",
                        "no alert but LastfmCertificateExpiringSoon")
        finally:
            ph.t1 = time.time()
            self.use_certificate("long")
        ok = self.run.wait_for("the long certificate seen again", lambda: all(
            value(x, "lastfm_tls_certificate_not_after_timestamp_seconds", target=TARGET) == self.certs["long"][2]
            for x in self.all_series().values()), 15)
        ph.check(bool(ok), "the vantages see the renewed certificate", cert)
        self.settle(ph, "the expiring certificate")

    def p5b_two_of_three(self):
        ph = self.phase("5b", "Last.fm cut from A and B, C fine: quorum alert, their warnings inhibited")
        t0 = time.time()
        suppressed, firing_in_prom = set(), set()

        def watch():
            for (n, state, by, labels) in am_alerts() or []:
                if state == "suppressed" and by:
                    suppressed.add((n, self.vantage_of({"labels": labels})))
            for (n, state, labels) in active_alerts() or []:
                if state == "firing":
                    firing_in_prom.add((n, self.vantage_of({"labels": labels})))
        for v in ("A", "B"):
            self.topo.cut_lastfm(v)
        try:
            self.injected(ph, "A", "connect", LASTFM_IP, 443, "EHOSTUNREACH")
            self.injected(ph, "B", "connect", LASTFM_IP, 443, "EHOSTUNREACH")
            self.injected(ph, "C", "connect", LASTFM_IP, 443, "connected")
            self.expect_delivered(ph, t0, "LastfmTargetUnavailable", 40, target=TARGET)
            self.hold_from(t0, watch)
            # the per-vantage warnings must have fired in Prometheus and been held back
            want = {("LastfmUnreachableFromVantage", v) for v in ("A", "B")}
            needs = ["rule:LastfmUnreachableFromVantage", "rule:LastfmTargetUnavailable", "alertmanager.yml"]
            ph.check(want <= firing_in_prom, "Prometheus fired LastfmUnreachableFromVantage for A and B "
                     f"({sorted(x for x in firing_in_prom if x[0] == 'LastfmUnreachableFromVantage')})", needs)
            ph.check(want <= suppressed, "Alertmanager held them back as inhibited "
                     f"({sorted(suppressed) or 'none'})", needs)
            self.forbid(ph, t0, lambda a: a["alertname"] == "LastfmTargetUnavailable",
                        "no alert but LastfmTargetUnavailable (the warnings inhibited)")
        finally:
            ph.t1 = time.time()
            # Both paths heal at once. The two monitors still see Last.fm available again a
            # run or two apart (their schedules differ, up_after = 2): in between the quorum is
            # gone while the other's warning still fires. Held back during the outage, it must
            # not be delivered on the way out either.
            for v in ("A", "B"):
                self.topo.uncut_lastfm(v)
        self.settle(ph, "A's and B's cut routes")

    def p5_down_for_all(self):
        ph = self.phase(5, "Last.fm refuses every vantage: quorum alert, per-vantage inhibited")
        t0 = time.time()
        self.procs.stop("lastfm-frontdoor")
        suppressed = set()
        for v in VANTAGES:
            self.injected(ph, v, "connect", LASTFM_IP, 443, "ECONNREFUSED")
        # A run in flight when the front door stopped ends with its connection reset, which is
        # the truth about that run: the baseline is taken once such runs are over (the longest
        # probe timeout), so only the runs that started against the refusing port are judged.
        time.sleep(IN_FLIGHT_SECONDS)
        before = {v: self.failures(s) for v, s in self.all_series().items()}

        def watch():
            for (n, state, by, labels) in am_alerts() or []:
                if state == "suppressed":
                    suppressed.add(f"{n}{{{short_labels(labels)}}}")
        try:
            self.expect_delivered(ph, t0, "LastfmTargetUnavailable", 40, target=TARGET)
            self.hold_from(t0, watch)
            bad = self.notes.alerts(t0, status="firing", name="LastfmUnreachableFromVantage")
            ph.check(not bad, "LastfmUnreachableFromVantage not delivered for any vantage "
                     f"({sorted({self.vantage_of(a) for a in bad}) or 'none'})",
                     ["rule:LastfmUnreachableFromVantage", "alertmanager.yml"])
            ph.info(f"suppressed in Alertmanager meanwhile: {sorted(suppressed) or 'none'}")
            self.forbid(ph, t0, lambda a: a["alertname"] == "LastfmTargetUnavailable",
                        "no alert but LastfmTargetUnavailable")
            after = self.all_series()
            for v in VANTAGES:
                g = self.grown(before[v], self.failures(after[v]))
                ph.check(bool(g) and all(p == "connect" and r == "refused" for (_, p, r) in g),
                         f"{v}: failures at connect/refused only ({sorted(set((p, r) for (_, p, r) in g))})",
                         ["metric:lastfm_probe_failures_total"])
            top = max((self.max_over(f'lastfm_condition{{vantage="{v}",condition="local_network_down"}}', t0) or 0)
                      for v in VANTAGES)
            ph.check(top == 0, "no vantage local_network_down (the references answer)",
                     ["metric:local_network_down", "config:references"])
        finally:
            ph.t1 = time.time()
            self.procs.start("lastfm-frontdoor", self.topo.inet, self.tls_argv)
        self.settle(ph, "Last.fm refusing connections")

    def p6_one_vantage(self):
        ph = self.phase(6, "only A cannot reach Last.fm: per-vantage alert, no quorum alert")
        before = self.failures(scrape(self.topo, "A"))
        t0 = time.time()
        self.topo.cut_lastfm("A")
        try:
            self.injected(ph, "A", "connect", LASTFM_IP, 443, "EHOSTUNREACH")
            self.injected(ph, "A", "connect", REF_IP, 80, "connected")
            self.injected(ph, "B", "connect", LASTFM_IP, 443, "connected")
            self.expect_delivered(ph, t0, "LastfmUnreachableFromVantage", 40, vantage="A")
            self.hold_from(t0)
            self.forbid(ph, t0, lambda a: a["alertname"] == "LastfmUnreachableFromVantage"
                        and self.vantage_of(a) == "A",
                        "no alert but LastfmUnreachableFromVantage{vantage=A} (no quorum alert)")
            s = scrape(self.topo, "A")
            g = self.grown(before, self.failures(s))
            ph.check(bool(g) and all(p == "connect" and r == "unreachable" for (_, p, r) in g),
                     f"A: failures at connect/unreachable only ({sorted(set((p, r) for (_, p, r) in g))})",
                     ["metric:lastfm_probe_failures_total"])
            ph.check(all(value(s, "lastfm_reference_up", reference=r) == 1 for r in REFERENCES),
                     "A: every reference up", ["config:references", "metric:lastfm_reference_up"])
            top = self.max_over('lastfm_condition{vantage="A",condition="local_network_down"}', t0)
            ph.check(top == 0, f"A: not local_network_down (max {top})", ["metric:local_network_down"])
            avail = self.max_over(f'lastfm_service_available{{vantage="A",target="{TARGET}"}}', time.time() - 2)
            ph.check(avail == 0, f"A: lastfm_service_available = 0 ({avail})")
        finally:
            ph.t1 = time.time()
            self.topo.uncut_lastfm("A")
        self.settle(ph, "A's cut route")

    def p7_recovery(self):
        ph = self.phase(7, "recovery: a resolved notification for every alert that fired")
        self.note_fired()
        resolved = {a["key"] for a in self.notes.alerts(status="resolved")}
        ph.info(f"{len(self.fired)} alerts fired, {len(resolved)} resolved, "
                f"{len(self.notes.since(0))} webhook POSTs in all")
        for k, a in sorted(self.fired.items()):
            ph.check(k in resolved, f"resolved delivered: {a['alertname']}{{{short_labels(a['labels'])}}}",
                     ["alertmanager.yml"])
        ph.check(bool(self.fired), "some alert fired during the run", ["alertmanager.yml"])
        ph.check(active_alerts() == [], "Prometheus: nothing pending or firing")
        left = [x for x in am_alerts() or [] if x[1] != "unprocessed"]
        ph.check(not left, f"Alertmanager: no active or suppressed alert ({[x[0] for x in left]})")
        ph.t1 = time.time()

    def run_all(self):
        steps = {"1": self.p1_healthy, "2": self.p2_wan_down, "3": self.p3_resolver,
                 "4": self.p4_offline, "4b": self.p4b_certificate, "5": self.p5_down_for_all,
                 "5b": self.p5b_two_of_three, "6": self.p6_one_vantage, "7": self.p7_recovery}
        only = self.args.phases.split(",") if self.args.phases else list(steps)
        for num, step in steps.items():
            if num not in only:
                continue
            try:
                step()
            except Deadline as e:
                ph = self.phases[-1] if self.phases and self.phases[-1].t1 is None else self.phase("-", step.__name__)
                ph.fail(str(e))
                ph.t1 = time.time()
                break
            except Exception as e:  # one phase's surprise must not hide the others
                ph = self.phases[-1]
                ph.fail(f"{type(e).__name__}: {e}")
                ph.t1 = ph.t1 or time.time()
            for name in list(self.procs.procs):
                if not self.procs.alive(name):
                    self.phases[-1].fail(f"process {name} exited: {self.procs.tail(name, 600)}")
                    self.procs.procs.pop(name)

    def table(self):
        print("\n" + "=" * 96)
        print(f"{'phase':<74} {'result':<6} {'time':>8}")
        print("-" * 96)
        for ph in self.phases:
            dur = (ph.t1 or time.time()) - ph.t0
            print(f"{ph.num:<3}{ph.title:<71} {ph.status:<6} {dur:7.1f}s")
            for line in ph.lines:
                print(f"      {line}")
        print("-" * 96)
        counts = {s: sum(1 for p in self.phases if p.status == s) for s in ORDER}
        print(f"{counts['PASS']} passed, {counts['FAIL']} failed, {counts['WAIT']} waiting; "
              f"total {time.time() - START:.0f}s")
        missing = sorted(k for k, v in self.features.items() if v != "shipped")
        if missing:
            print("not shipped yet (WAIT): " + ", ".join(f"{k} ({self.features[k]})" for k in missing))
        print("=" * 96)
        return counts


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--binary", default=os.path.join(ROOT, "target", "debug", "lastfm-monitor"))
    ap.add_argument("--prometheus", default=shutil.which("prometheus") or "prometheus")
    ap.add_argument("--deadline", type=float, default=360.0, help="whole run, seconds")
    ap.add_argument("--settle", type=float, default=40.0, help="recovery wait per phase, seconds")
    ap.add_argument("--for-scale", type=float, default=60.0,
                    help="every rule's for: is divided by this (5m -> 5s), keeping the shipped order")
    ap.add_argument("--min-for", type=int, default=2, help="shortest rewritten for:, seconds")
    ap.add_argument("--group-wait", type=int, default=4)
    ap.add_argument("--group-interval", type=int, default=2)
    ap.add_argument("--agents", action="store_true",
                    help="a Prometheus agent per vantage (shipped agent-vantage.yml) remote-writing "
                         "to the central one (central.yml), instead of the central one scraping all")
    ap.add_argument("--rules", default=RULES, help="rules file (default: the shipped one)")
    ap.add_argument("--alertmanager-config", default=AM_CONFIG,
                    help="Alertmanager config (default: the shipped one)")
    ap.add_argument("--phases", help="comma-separated subset to run, e.g. 1,5b,7 (default all)")
    ap.add_argument("--allow-wait", action="store_true", help="exit 0 when nothing FAILs")
    ap.add_argument("--keep", action="store_true", help="keep the work dir")
    args = ap.parse_args()
    args.binary = os.path.abspath(args.binary)

    if os.geteuid() != 0:
        raise SystemExit("e2e-vantage: needs root (network namespaces)")
    for tool in ("ip", "openssl", "promtool", "amtool", args.prometheus,
                 "/usr/bin/prometheus-alertmanager", "/usr/sbin/dnsmasq", args.binary):
        if not shutil.which(tool) and not os.path.exists(tool):
            raise SystemExit(f"e2e-vantage: {tool} not found (see the docstring for packages; "
                             "the binary: cargo build --locked)")

    remove_leftovers()
    work = tempfile.mkdtemp(prefix="lastfm-e2e-vantage-")
    topo = Topology()
    procs = Procs(work)
    state = {"done": False, "ok": False}

    def cleanup():
        if state["done"]:
            return
        state["done"] = True
        codes = procs.stop_all()
        bad = {n: c for n, c in codes.items() if n.startswith("daemon") and c not in (0, None)}
        if bad:
            log(f"daemon exit status {bad} (expected 0)")
            state["ok"] = False
        topo.destroy()
        if args.keep or not state["ok"]:
            log(f"work dir kept: {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)

    atexit.register(cleanup)

    def on_signal(signum, _frame):
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)

    e2e = E2E(args, topo, procs, work)
    counts = None
    try:
        topo.create()
        log(f"namespaces {topo.inet}, {topo.mon}, {', '.join(topo.vns.values())}; work dir {work}")
        e2e.start()
        e2e.run_all()
        counts = e2e.table()
        state["ok"] = counts["FAIL"] == 0 and counts["WAIT"] == 0
    except Exception as e:
        log(f"set-up failed: {type(e).__name__}: {e}")
        for name in procs.procs:
            log(f"--- {name}.log (tail) ---\n{procs.tail(name, 1500)}")
        if e2e.phases:
            e2e.table()
    finally:
        if counts and counts["FAIL"]:
            for name in list(procs.procs):
                if name.startswith(("daemon", "prometheus", "alertmanager", "agent")):
                    log(f"--- {name}.log (tail; all logs are in {work}) ---\n{procs.tail(name, 1500)}")
        cleanup()
    log(f"done in {time.time() - START:.0f}s")
    if counts is None or counts["FAIL"]:
        return 1
    if counts["WAIT"]:
        return 0 if args.allow_wait else 3
    return 0


if __name__ == "__main__":
    sys.exit(main())
