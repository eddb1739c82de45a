#!/usr/bin/env python3
"""End-to-end proof of the dashboards and alert rules against a real Prometheus and Alertmanager.

Starts, all on 127.0.0.1 with free ports:
  1. `lastfm-monitor simulate` with a scripted scenario (dashboards/e2e/scenario.toml):
     healthy, canary writes ignored (code 1), a mix of upstream errors while canary writes are
     accepted but never visible, service offline (error 11), key suspended (error 26), recovery;
     beside it, started at the same moment, a Libre.fm simulator (dashboards/e2e/librefm-outage.toml:
     healthy 30 s, an nginx 502 for every method for 60 s, healthy again) and a ListenBrainz one
     (dashboards/e2e/listenbrainz.toml, healthy), each with its personality;
  2. the real daemon, probing the simulator every second;
  3. Prometheus, scraping the daemon every second with the shipped rules loaded
     (dashboards/prometheus/lastfm-monitor.rules.yml, evaluated every second), every `for:`
     divided by --for-scale (60: 2m becomes 2 s, at least 2 s) so that alerts fire within the
     run; the expressions and annotations stay as shipped (`promtool test rules` pins the
     shipped `for:`);
  4. Alertmanager with the shipped config (dashboards/alertmanager/alertmanager.yml): routes,
     grouping and inhibit rules as shipped, group_wait and group_interval 1 s, its receiver's
     webhook URL pointed at this process, which records every notification delivered.

A second target, `lastfm-tls`, reaches the same simulator through a TLS front (a certificate the
test's own CA signed, valid for 7 days, trusted through SSL_CERT_FILE), so the certificate
gauge has data and LastfmCertificateExpiringSoon must fire; a `[[references]]` (the simulator's
root, a 404 that counts as reachable) gives the reference series data. A third, `lastfm-writes`,
has only a now-playing canary (every 3 s) on the scenario's canary account: its own target, so
the rate limits of `lastfm-sim`'s upstream-error episode do not back it off. `librefm-sim`
(api = "librefm": its probes, a negative control expecting GNU FM's 7, a now-playing canary read
back) and `listenbrainz-sim` (api = "listenbrainz": signed user.getInfo, a negative control, a
write-only canary) are the other two services.

Then it asserts that the LastfmServiceOffline alert becomes pending or firing during the error-11
phase, LastfmApiKeySuspended during the error-26 phase and LastfmErrorBudgetBurnFast is firing
for `lastfm-sim` during the error-11 phase; that Alertmanager delivers LastfmScrobblesIgnored
(ignored-writes episode) and LastfmScrobblesNotVisible (invisible-writes episode, its summary
saying how long since the last visible run, checked against the daemon's gauge), and their
resolved notifications once the canary's writes show again; that Alertmanager delivers
LastfmTargetUnavailable for `librefm-sim` during its outage and its resolution after it, and no
alert of any kind ever holds for `listenbrainz-sim`; that neither service's errors with 200 count
as status mismatches, ListenBrainz's X-RateLimit-Remaining is exported, the Libre.fm canary reads
its plays back and the ListenBrainz one ends `accepted`; and finally evaluates every PromQL
expression of the dashboard JSON, the Grafana alert rules and the Prometheus rules through the
HTTP API (dashboards/queries.py): none may error, at least 90% must return data, and every one
that reads the write path (canary series, rate-limit scopes, the write-path conditions) or
ListenBrainz's rate-limit budget must.

With --demo it instead runs `lastfm-monitor demo` (the built-in simulator and incident timeline)
with Prometheus scraping it for 75 s, then requires at least one alert pending or firing, at
least 80% of the shipped queries to return data (none may error), and every write-path query of
the dashboard and the Grafana rules, and every rate-limit budget query, to return data.

Usage: python3 dashboards/e2e.py [--demo] [--binary target/debug/lastfm-monitor] [--keep]
Needs `prometheus` and `prometheus-alertmanager` on PATH (Debian's packages). Bounded: gives up
after --deadline seconds (180). Standard library only.
"""

import argparse
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
RULES = os.path.join(HERE, "prometheus", "lastfm-monitor.rules.yml")
SCENARIO = os.path.join(HERE, "e2e", "scenario.toml")
LIBREFM_SCENARIO = os.path.join(HERE, "e2e", "librefm-outage.toml")
LISTENBRAINZ_SCENARIO = os.path.join(HERE, "e2e", "listenbrainz.toml")
AM_CONFIG = os.path.join(HERE, "alertmanager", "alertmanager.yml")

# The scenario's timeline, in seconds from the simulator's start (dashboards/e2e/scenario.toml).
PHASES = {
    "healthy": (0, 10),
    "writes-ignored": (10, 25),
    "upstream-errors": (25, 45),  # canary writes accepted but never visible meanwhile
    "service-offline": (45, 80),
    "key-suspended": (80, 115),
    "recovery": (115, None),
}
# Libre.fm's outage (an nginx 502 for every method), in seconds from the same start: its simulator
# starts with the Last.fm one (dashboards/e2e/librefm-outage.toml).
LIBREFM_OUTAGE = (30, 90)
DASHBOARD = os.path.join(HERE, "lastfm-monitor.json")


def write_path_panels():
    """The ids of the dashboard's "Write path" row's panels."""
    with open(DASHBOARD) as f:
        panels = json.load(f)["panels"]
    ids, inside = set(), False
    for p in panels:
        if p.get("type") == "row":
            inside = p.get("title", "").startswith("Write path")
        elif inside:
            ids.add(p["id"])
    return ids


def reads_write_path(q, panels):
    """Whether a query of queries.py reads the write path: a panel of the "Write path" row, a
    query of the write-path conditions, or a query of a write-path alert (Grafana or Prometheus)."""
    m = re.search(r"#panel=(\d+):", q["source"])
    return bool((m and int(m.group(1)) in panels) or 'condition="scrobbles_' in q["expr"]
                or re.search(r"scrobbles", q["source"], re.I))

CONFIG = """
[web]
listen_address = "127.0.0.1:{daemon_port}"

[defaults]
interval = "1s"
timeout = "800ms"
startup_jitter = "1s"

[[references]]
name = "simulator-root"
url = "http://127.0.0.1:{sim_port}/"
interval = "2s"
timeout = "1s"

[[targets]]
name = "lastfm-tls"
base_url = "https://localhost:{tls_port}/2.0/"
api_key = {{ env = "LASTFM_API_KEY" }}
max_requests_per_second = 5.0
burst = 5

[[targets.probes]]
method = "artist.getInfo"
params = {{ artist = "Cher" }}
interval = "2s"

[[targets]]
name = "lastfm-sim"
base_url = "http://127.0.0.1:{sim_port}/2.0/"
api_key = {{ env = "LASTFM_API_KEY" }}
max_requests_per_second = 20.0
burst = 20
down_after = 2
up_after = 2
suspended_interval = "2s"
backoff_initial = "2s"
backoff_max = "4s"

[[targets.probes]]
method = "user.getInfo"
params = {{ user = "rj" }}
checks = [{{ pointer = "/user/name", equals = "rj" }}]

[[targets.probes]]
method = "artist.getInfo"
params = {{ artist = "Cher" }}

[[targets.probes]]
method = "album.getInfo"
params = {{ artist = "Cher", album = "Believe" }}

[[targets.probes]]
method = "chart.getTopArtists"
params = {{ limit = 1 }}

[[targets.probes]]
method = "track.search"
params = {{ track = "Believe", limit = 1 }}
format = "xml"

[[targets.probes]]
name = "user.getInfo.missing"
method = "user.getInfo"
params = {{ user = "no-such-user-lastfm-monitor" }}
expect = {{ error = 6 }}

# The write path: the scenario says whose session sk-e2e-canary is. The simulator checks neither
# signatures nor secrets without [[keys]].
[[targets]]
name = "lastfm-writes"
base_url = "http://127.0.0.1:{sim_port}/2.0/"
api_key = {{ env = "LASTFM_API_KEY" }}
api_secret = {{ env = "LASTFM_API_KEY" }}
session_key = "sk-e2e-canary"
max_requests_per_second = 10.0
burst = 10
suspended_interval = "2s"
backoff_initial = "2s"
backoff_max = "4s"

[[targets.canaries]]
name = "now-playing"
user = "canary"
interval = "3s"
visible_within = "1s"
poll_every = "1s"

# Libre.fm (GNU FM) and ListenBrainz beside Last.fm, each judged by its own profile; their
# simulators start with the others (dashboards/e2e/librefm-outage.toml: down behind its nginx from
# 30 s to 90 s; dashboards/e2e/listenbrainz.toml: healthy throughout).
[[targets]]
name = "librefm-sim"
base_url = "http://127.0.0.1:{librefm_port}/2.0/"
api = "librefm"
api_key = {{ env = "LASTFM_API_KEY" }}
api_secret = {{ env = "LASTFM_API_KEY" }}
session_key = "sk-e2e-canary"
max_requests_per_second = 10.0
burst = 10
down_after = 2
up_after = 2

[[targets.probes]]
method = "user.getInfo"
params = {{ user = "canary" }}

[[targets.probes]]
method = "artist.getInfo"
params = {{ artist = "Cher" }}

[[targets.probes]]
method = "user.getRecentTracks"
params = {{ user = "canary", limit = 1 }}

# GNU FM answers an unknown user with 7 (Last.fm: 6), with 200 OK: documented, no mismatch.
[[targets.probes]]
name = "user.getInfo.missing"
method = "user.getInfo"
params = {{ user = "no-such-user-lastfm-monitor" }}
expect = {{ error = 7 }}

[[targets.canaries]]
name = "now-playing"
user = "canary"
interval = "3s"
visible_within = "1s"
poll_every = "1s"

# ListenBrainz's compatibility API: auth, user.getInfo (signed) and the two writes only.
[[targets]]
name = "listenbrainz-sim"
base_url = "http://127.0.0.1:{listenbrainz_port}/2.0/"
api = "listenbrainz"
api_key = {{ env = "LASTFM_API_KEY" }}
api_secret = {{ env = "LASTFM_API_KEY" }}
session_key = "sk-e2e-canary"
max_requests_per_second = 5.0
burst = 5
down_after = 2
up_after = 2

[[targets.probes]]
method = "user.getInfo"
signed = true

[[targets.probes]]
name = "user.getInfo.missing"
method = "user.getInfo"
params = {{ user = "no-such-user-lastfm-monitor" }}
signed = true
expect = {{ error = 7 }}

# No read-back there: a good write ends the run as "accepted".
[[targets.canaries]]
name = "now-playing"
user = "canary"
interval = "3s"
visible_within = "1s"
poll_every = "1s"
"""

PROMETHEUS = """
global:
  scrape_interval: 1s
  evaluation_interval: 1s
rule_files:
  - {rules}
alerting:
  alertmanagers:
    - static_configs:
        - targets: ["127.0.0.1:{am_port}"]
scrape_configs:
  - job_name: lastfm-monitor
    static_configs:
      - targets: ["127.0.0.1:{daemon_port}"]
"""


def seconds_of(text):
    """A Prometheus duration such as `2m`, `1h30m` or `15s`, in seconds."""
    units = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800, "y": 31536000}
    parts = re.findall(r"(\d+)(ms|[smhdwy])", text)
    if not parts or "".join(n + u for n, u in parts) != text:
        raise SystemExit(f"e2e: cannot read the duration {text!r}")
    return sum(int(n) * units[u] for n, u in parts)


def rewrite_rules(work, scale, minimum, log):
    """The shipped rules with every alert's `for:` divided by `scale` (at least `minimum`
    seconds), as text: the expressions, the annotations and the order between alerts stay."""
    with open(RULES) as f:
        lines = f.read().split("\n")
    changed = {}
    for i, line in enumerate(lines):
        m = re.fullmatch(r"(\s+)for: (\S+)\s*", line)
        if m:
            new = max(minimum, round(seconds_of(m.group(2)) / scale))
            changed[m.group(2)] = new
            lines[i] = f"{m.group(1)}for: {new}s"
    path = os.path.join(work, "rules.yml")
    with open(path, "w") as f:
        f.write("\n".join(lines))
    log(f"rules: every for: divided by {scale}: " + ", ".join(f"{k} -> {v}s" for k, v in sorted(changed.items(), key=lambda kv: seconds_of(kv[0]))))
    return path


def rewrite_alertmanager(work, hook_url):
    """The shipped Alertmanager config with 1 s group timings and its receiver's webhook at
    `hook_url`, as text (the keys are where the file's comment says a test rewrites them); routes,
    grouping and inhibit rules as shipped."""
    with open(AM_CONFIG) as f:
        text = f.read()
    for key, value in (("group_wait", "1s"), ("group_interval", "1s"), ("repeat_interval", "1h"),
                       ("url", hook_url)):
        pattern = re.compile(rf"^(\s+(?:- )?{key}:)\s*\S+\s*$", re.M)
        text, n = pattern.subn(lambda m: f"{m.group(1)} {value}", text)
        if n != 1:
            raise SystemExit(f"e2e: {AM_CONFIG} has {n} `{key}:` keys outside comments, expected 1")
    path = os.path.join(work, "alertmanager.yml")
    with open(path, "w") as f:
        f.write(text)
    return path


class Notifications:
    """Every notification Alertmanager delivers to the test's webhook: (t, status, labels,
    annotations) per alert of each POST."""

    def __init__(self):
        self.lock = threading.Lock()
        self.alerts = []

    def add(self, payload):
        with self.lock:
            for a in payload.get("alerts", []):
                self.alerts.append((time.time(), a.get("status", ""), a.get("labels", {}),
                                    a.get("annotations", {})))

    def find(self, name, status, **labels):
        """The notifications of alert `name` (every alert when None) with `status` and `labels`."""
        with self.lock:
            return [a for a in self.alerts if a[1] == status and name in (None, a[2].get("alertname"))
                    and all(a[2].get(k) == v for k, v in labels.items())]


def start_webhook(store):
    class Hook(BaseHTTPRequestHandler):
        def do_POST(self):
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            try:
                store.add(json.loads(body))
            except ValueError:
                pass
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args):
            pass

    srv = ThreadingHTTPServer(("127.0.0.1", 0), Hook)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    return srv


class AlertHistory:
    """Prometheus' pending and firing alerts, sampled every second in a thread: (t, name, state,
    labels), so that an assertion can look at what held during a phase after the fact."""

    def __init__(self, prom):
        self.prom = prom
        self.samples = []
        self.lock = threading.Lock()
        self.stop = threading.Event()
        threading.Thread(target=self._run, daemon=True).start()

    def _run(self):
        while not self.stop.is_set():
            try:
                alerts = json.loads(get(f"{self.prom}/api/v1/alerts"))["data"]["alerts"]
                now = time.time()
                with self.lock:
                    self.samples += [(now, a["labels"]["alertname"], a["state"], a["labels"]) for a in alerts]
            except (OSError, ValueError, KeyError):
                pass
            self.stop.wait(1)

    def seen(self, name, state, t_from, t_to, **labels):
        """Samples of alert `name` (every alert when None) in `state` between the two times."""
        with self.lock:
            return [s for s in self.samples if name in (None, s[1]) and s[2] == state
                    and t_from <= s[0] <= t_to and all(s[3].get(k) == v for k, v in labels.items())]


def humanized_seconds(text):
    """Seconds of Prometheus' humanizeDuration output (`25.3s`, `1m 5s`, `2h 0m 3s`)."""
    total = 0.0
    for n, unit in re.findall(r"([\d.]+)(ms|[dhms])", text):
        total += float(n) * {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400}[unit]
    return total


def make_certificates(work):
    """A CA and a 7-day leaf for localhost (openssl), so the certificate expires within 14 days."""
    def openssl(*args):
        subprocess.run(["openssl", *args], check=True, capture_output=True, timeout=60)
    ca_key, ca, key, csr, leaf = (os.path.join(work, n) for n in
                                  ("ca.key", "ca.pem", "leaf.key", "leaf.csr", "leaf.pem"))
    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", ca_key, "-out", ca,
            "-days", "30", "-subj", "/CN=lastfm-monitor e2e CA",
            "-addext", "basicConstraints=critical,CA:TRUE",
            "-addext", "keyUsage=critical,keyCertSign,cRLSign")
    openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-out", csr,
            "-subj", "/CN=localhost")
    ext = os.path.join(work, "leaf.ext")
    with open(ext, "w") as f:
        f.write("subjectAltName=DNS:localhost\nbasicConstraints=CA:FALSE\n"
                "extendedKeyUsage=serverAuth\n")
    openssl("x509", "-req", "-in", csr, "-CA", ca, "-CAkey", ca_key, "-CAcreateserial",
            "-out", leaf, "-days", "7", "-extfile", ext)
    return ca, leaf, key


def tls_front(port, upstream_port, cert, key, stop):
    """A TLS-terminating TCP relay on 127.0.0.1:port in front of the simulator, in threads."""
    import ssl
    import threading
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert, key)
    listener = socket.create_server(("127.0.0.1", port))
    listener.settimeout(0.5)

    def pipe(src, dst):
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def serve_one(raw):
        try:
            raw.settimeout(10)
            tls = ctx.wrap_socket(raw, server_side=True)
            up = socket.create_connection(("127.0.0.1", upstream_port), timeout=10)
        except (OSError, ssl.SSLError):
            raw.close()
            return
        threading.Thread(target=pipe, args=(up, tls), daemon=True).start()
        pipe(tls, up)

    def accept_loop():
        while not stop.is_set():
            try:
                raw, _ = listener.accept()
            except socket.timeout:
                continue
            except OSError:
                break
            threading.Thread(target=serve_one, args=(raw,), daemon=True).start()
        listener.close()

    threading.Thread(target=accept_loop, daemon=True).start()


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def get(url, timeout=5):
    with urllib.request.urlopen(url, timeout=timeout) as r:
        return r.read().decode()


def wait_http(url, deadline, what):
    while time.time() < deadline:
        try:
            get(url, timeout=1)
            return
        except OSError:
            time.sleep(0.2)
    raise SystemExit(f"e2e: {what} did not come up at {url}")


def prom_query(prom, expr):
    url = f"{prom}/api/v1/query?" + urllib.parse.urlencode({"query": expr})
    return json.loads(get(url))["data"]["result"]


def alert_states(prom):
    alerts = json.loads(get(f"{prom}/api/v1/alerts"))["data"]["alerts"]
    return {(a["labels"]["alertname"], a["state"]) for a in alerts}


def wait_alert(prom, name, deadline, log):
    while time.time() < deadline:
        states = alert_states(prom)
        hit = sorted(s for (n, s) in states if n == name)
        if hit:
            log(f"alert {name}: {', '.join(hit)}")
            return True
        time.sleep(1)
    log(f"alert {name}: never pending or firing; alerts seen: {sorted(alert_states(prom))}")
    return False


def run_queries(prom, min_data, log, window=None, alert_kinds=True):
    """Every shipped expression through Prometheus, alert rules included in the data share. With
    `window`, an expression counts as returning data if it did at any moment of the last `window`
    seconds (alert rules return data only while their incident lasts). Every expression that
    reads the write path must return data too (alerting rules only with `alert_kinds`), and so
    must every one of the rate-limit budget (lastfm_target_rate_limit_remaining, optional for
    queries.py): both modes run a ListenBrainz target. Returns the list of failures."""
    argv = [sys.executable, os.path.join(HERE, "queries.py"), "--prom", prom, "--min-data",
            str(min_data), "--include-alerts"]
    if window:
        argv += ["--window", str(window)]
    checker = subprocess.run(
        argv,
        capture_output=True, text=True, timeout=120)
    summary = [l for l in checker.stdout.splitlines() if not l.startswith("{")]
    failures = []
    write_path = budget = 0
    panels = write_path_panels()
    for line in checker.stdout.splitlines():
        if not line.startswith("{"):
            continue
        if '"error"' in line or '"empty"' in line or '"absent-optional"' in line:
            log(f"query: {line}")
        q = json.loads(line)
        if reads_write_path(q, panels) and (alert_kinds or q["kind"] != "alert"):
            write_path += 1
            if q["status"] != "data":
                failures.append(f"write-path query without data ({q['status']}): {q['source']}")
        if "lastfm_target_rate_limit_remaining" in q["expr"]:
            budget += 1
            if q["status"] != "data":
                failures.append(f"rate-limit budget query without data ({q['status']}): {q['source']}")
    log("queries: " + " | ".join(summary + checker.stderr.splitlines()))
    log(f"write-path queries: {write_path}; rate-limit budget queries: {budget}; without data: {len(failures)}")
    if checker.returncode != 0:
        failures.append(f"queries.py --prom --min-data {min_data}" + (" --window" if window else "") + " failed")
    if write_path < len(panels):
        failures.append(f"only {write_path} queries read the write path")
    if not budget:
        failures.append("no shipped query reads lastfm_target_rate_limit_remaining")
    return failures


def demo_checks(prom, t0, deadline, log):
    """`lastfm-monitor demo` scraped for 75 s: an alert pending or firing, >= 80% of queries with
    data, every write-path query of the dashboard and the Grafana rules with data."""
    while time.time() < min(deadline - 30, t0 + 75):
        time.sleep(1)
    states = sorted(alert_states(prom))
    log(f"alerts after 75 s: {states}")
    failures = []
    if not any(state in ("pending", "firing") for (_, state) in states):
        failures.append("no alert pending or firing after 75 s of the demo")
    # The demo's writes-invisible phase comes after 75 s: its alerting rules are left out.
    failures += run_queries(prom, 0.8, log, alert_kinds=False)
    for f in failures:
        log(f"FAIL: {f}")
    if not failures:
        log("PASS: demo scraped 75 s; every query valid, >= 80% with data (the write path's all), an alert pending or firing")
    return 1 if failures else 0


def write_path_checks(prom, ts, deadline, hooks, log):
    """The write path's alerts, as Alertmanager delivered them: LastfmScrobblesIgnored during the
    ignored-writes episode, LastfmScrobblesNotVisible during the invisible one with a summary that
    says how long since the last visible run, both resolved once the canary's writes show again."""
    failures = []
    writes = {"target": "lastfm-writes"}

    def delivered(name, status, until, **labels):
        while time.time() < min(deadline, until):
            hit = hooks.find(name, status, **labels)
            if hit:
                log(f"delivered: {status} {name} at {hit[0][0] - ts:.1f}s: {hit[0][3].get('summary', '')}")
                return hit
            time.sleep(0.5)
        log(f"not delivered: {status} {name} {labels} by {until - ts:.0f}s")
        return []

    # Fired while the episodes last (ignored from 10 s, invisible from 25 s; both held through the
    # error-11 and error-26 episodes, when the writes are refused and prove nothing).
    ignored = delivered("LastfmScrobblesIgnored", "firing", ts + PHASES["recovery"][0], **writes)
    if not ignored:
        failures.append("LastfmScrobblesIgnored was not delivered during the ignored-writes episode")
    hidden = delivered("LastfmScrobblesNotVisible", "firing", ts + PHASES["recovery"][0], **writes)
    if not hidden:
        failures.append("LastfmScrobblesNotVisible was not delivered during the invisible-writes episode")
    else:
        at, _, _, annotations = hidden[0]
        summary = annotations.get("summary", "")
        m = re.search(r": (.+) since the last visible run$", summary)
        last = prom_query(prom, 'max(lastfm_canary_last_visible_timestamp_seconds{target="lastfm-writes"})')
        if not m or not last:
            failures.append(f"LastfmScrobblesNotVisible's summary does not say how long since the last visible run: {summary!r}")
        else:
            said, expected = humanized_seconds(m.group(1)), at - float(last[0]["value"][1])
            log(f"summary says {said:.1f}s since the last visible run; the gauge, at delivery: {expected:.1f}s")
            if not (0 < said <= expected + 0.5 and said > expected - 5):
                failures.append(f"LastfmScrobblesNotVisible's summary says {m.group(1)}, the gauge {expected:.1f}s at delivery")
    # Recovery: the canary's writes show again, both conditions clear, both alerts resolve.
    for name in ("LastfmScrobblesIgnored", "LastfmScrobblesNotVisible"):
        if not delivered(name, "resolved", ts + PHASES["recovery"][0] + 20, **writes):
            failures.append(f"{name} was not resolved after the recovery")
    return failures


def three_service_checks(prom, ts, hooks, history, log):
    """Libre.fm and ListenBrainz beside Last.fm, after the fact (Libre.fm's outage is over by the
    time the write path's alerts have resolved): LastfmTargetUnavailable delivered for librefm-sim
    during its outage and resolved after it, never pending outside it; no alert at all, pending,
    firing or delivered, for listenbrainz-sim; each service judged by its own profile (Libre.fm's
    error 7 with 200 OK and ListenBrainz's answers are no status mismatch); ListenBrainz's
    X-RateLimit-Remaining exported; each service's canary ending as its profile says."""
    failures = []
    libre, lb = {"target": "librefm-sim"}, {"target": "listenbrainz-sim"}
    start, end = (ts + s for s in LIBREFM_OUTAGE)
    fired = hooks.find("LastfmTargetUnavailable", "firing", **libre)
    resolved = hooks.find("LastfmTargetUnavailable", "resolved", **libre)
    for what, hits in (("firing", fired), ("resolved", resolved)):
        log(f"LastfmTargetUnavailable{{target=librefm-sim}} {what}: delivered at "
            + (", ".join(f"{h[0] - ts:.1f}s" for h in hits) or "never"))
    if not any(start < h[0] <= end for h in fired):
        failures.append(f"LastfmTargetUnavailable was not delivered for librefm-sim during its outage "
                        f"({LIBREFM_OUTAGE[0]}-{LIBREFM_OUTAGE[1]} s)")
    if not any(end < h[0] <= end + 20 for h in resolved):
        failures.append("LastfmTargetUnavailable for librefm-sim was not resolved within 20 s of the outage's end")
    # Pending needs down_after runs and firing its (scaled) for:; it clears up_after runs and one
    # evaluation after the end: 10 s of slack either side.
    outside = [s for state in ("pending", "firing")
               for s in history.seen("LastfmTargetUnavailable", state, ts, time.time(), **libre)
               if not start <= s[0] <= end + 10]
    if outside:
        failures.append(f"LastfmTargetUnavailable was {outside[0][2]} for librefm-sim at "
                        f"{outside[0][0] - ts:.1f}s, outside its outage")
    lb_alerts = sorted({(s[1], s[2]) for state in ("pending", "firing")
                        for s in history.seen(None, state, ts, time.time(), **lb)})
    lb_alerts += sorted({(a[2].get("alertname"), "delivered") for a in hooks.find(None, "firing", **lb)})
    log(f"alerts for listenbrainz-sim: {lb_alerts or 'none'}")
    if lb_alerts:
        failures.append(f"alerts for listenbrainz-sim, healthy throughout: {lb_alerts}")

    def value(expr):
        result = prom_query(prom, expr)
        return float(result[0]["value"][1]) if result else None

    checks = [
        # expression, what it means, predicate
        ('sum(lastfm_status_mismatch_total{target=~"librefm-sim|listenbrainz-sim"})',
         "status mismatches on Libre.fm and ListenBrainz (their errors come with 200, documented)",
         lambda v: v == 0),
        ('sum(lastfm_api_errors_total{target="librefm-sim", probe="user.getInfo.missing", code="7"})',
         "Libre.fm's negative control answered 7", lambda v: v > 0),
        ('min(lastfm_target_rate_limit_remaining{target="listenbrainz-sim"})',
         "ListenBrainz's X-RateLimit-Remaining", lambda v: 0 <= v <= 100),
        ('count(lastfm_target_rate_limit_remaining{target!="listenbrainz-sim"}) or vector(0)',
         "X-RateLimit-Remaining of the targets whose answers never carry it", lambda v: v == 0),
        ('sum(lastfm_canary_runs_total{target="listenbrainz-sim", result="accepted"})',
         "ListenBrainz canary runs accepted (no read-back)", lambda v: v > 0),
        ('sum(lastfm_canary_runs_total{target="librefm-sim", result="visible"})',
         "Libre.fm canary runs visible (read back)", lambda v: v > 0),
        ('sum(increase(lastfm_canary_runs_total{target="librefm-sim", result="visible"}[15s]))',
         "Libre.fm canary runs visible again after its outage", lambda v: v > 0),
        ('count(count by (target) (lastfm_service_available))',
         "targets in the dashboard's $target variable (the five of the config)", lambda v: v == 5),
    ]
    for expr, what, ok in checks:
        v = value(expr)
        log(f"{what}: {v}")
        if v is None or not ok(v):
            failures.append(f"{what}: {v} ({expr})")
    return failures


def scenario_checks(prom, t0, ts, deadline, hooks, history, log):
    """The scripted scenario: alerts for 11 and 26, the error budget's fast burn, the write path's
    alerts delivered and resolved, then every query valid, >= 90% with data, the write path's all."""
    # Timeline: PHASES, from the simulator's start (ts).
    failures = []
    if not wait_alert(prom, "LastfmServiceOffline", min(deadline, t0 + 85), log):
        failures.append("LastfmServiceOffline never became pending or firing during the error-11 phase")
    if not wait_alert(prom, "LastfmApiKeySuspended", min(deadline, t0 + 120), log):
        failures.append("LastfmApiKeySuspended never became pending or firing during the error-26 phase")
    # The error budget (objective 0.995): lastfm-sim is unavailable from the upstream-error episode
    # (about 27 s) on, through errors 11 and 26 (26 is our key's fault: it never makes a target
    # available again), so over the few minutes of data both the 1h and the 5m window read an
    # error ratio far above 14.4 * 0.005 = 0.072 from about 30 s: the burn is firing throughout the
    # error-11 episode, its for: (2m) scaled down.
    offline = PHASES["service-offline"]
    burning = history.seen("LastfmErrorBudgetBurnFast", "firing", ts + offline[0] + 5, ts + offline[1], target="lastfm-sim")
    log(f"LastfmErrorBudgetBurnFast{{target=lastfm-sim}} firing in {len(burning)} samples of the error-11 phase")
    if not burning:
        failures.append("LastfmErrorBudgetBurnFast was not firing for lastfm-sim during the error-11 phase")
    elif not hooks.find("LastfmErrorBudgetBurnFast", "firing", target="lastfm-sim"):
        failures.append("LastfmErrorBudgetBurnFast fired for lastfm-sim but was not delivered")
    # The TLS target's 7-day certificate: its gauge holds the leaf's notAfter, and the alert fires.
    days = prom_query(prom, '(lastfm_tls_certificate_not_after_timestamp_seconds{target="lastfm-tls"} - time()) / 86400')
    log(f"lastfm-tls certificate days left: {[r['value'][1] for r in days]}")
    if not days or not 6.0 < float(days[0]["value"][1]) <= 7.0:
        failures.append("the TLS target's certificate gauge is not the 7-day leaf's notAfter")
    if not wait_alert(prom, "LastfmCertificateExpiringSoon", min(deadline, t0 + 125), log):
        failures.append("LastfmCertificateExpiringSoon never became pending or firing for a 7-day certificate")
    failures += write_path_checks(prom, ts, deadline, hooks, log)
    # The canary's read-back step does not run while its writes are ignored or refused: that is
    # the write path's alerts' to say, never LastfmProbesStale's.
    stale = history.seen("LastfmProbesStale", "firing", ts, time.time(), target="lastfm-writes", probe="now-playing.read")
    if stale:
        failures.append("LastfmProbesStale fired for the canary's read-back step (now-playing.read)")
    # Let recovery produce a few healthy scrapes so rate() windows hold every kind of sample.
    while time.time() < min(deadline - 20, t0 + 125):
        time.sleep(1)
    up = prom_query(prom, 'up{job="lastfm-monitor"}')
    log(f"up = {[r['value'][1] for r in up]}")
    failures += three_service_checks(prom, ts, hooks, history, log)
    failures += run_queries(prom, 0.9, log, window=time.time() - t0)
    for f in failures:
        log(f"FAIL: {f}")
    if not failures:
        log("PASS: every shipped query is valid, >= 90% return data (the write path's all); alerts for 11, 26 "
            "and the fast burn fired; the write path's alerts were delivered and resolved; Libre.fm's outage "
            "alerted for it alone and resolved")
    return 1 if failures else 0


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--binary", default=os.path.join(ROOT, "target", "debug", "lastfm-monitor"))
    ap.add_argument("--prometheus", default=shutil.which("prometheus") or "prometheus")
    ap.add_argument("--deadline", type=float, default=180.0)
    ap.add_argument("--keep", action="store_true", help="keep the temp dir for inspection")
    ap.add_argument("--alertmanager", default=shutil.which("prometheus-alertmanager")
                    or shutil.which("alertmanager") or "prometheus-alertmanager")
    ap.add_argument("--demo", action="store_true", help="scrape `lastfm-monitor demo` for 75 s")
    ap.add_argument("--for-scale", type=float, default=60.0,
                    help="divide every alert's for: by this (default 60: 2m becomes 2 s)")
    ap.add_argument("--min-for", type=int, default=2, help="the shortest for: after scaling, seconds")
    args = ap.parse_args()

    start = time.time()
    deadline = start + args.deadline

    def log(msg):
        print(f"[e2e {time.time() - start:6.1f}s] {msg}", flush=True)

    if not os.path.exists(args.binary):
        raise SystemExit(f"e2e: build the daemon first ({args.binary} is missing): cargo build")
    work = tempfile.mkdtemp(prefix="lastfm-e2e-")
    sim_port, daemon_port, prom_port = free_port(), free_port(), free_port()
    tls_port, am_port = free_port(), free_port()
    librefm_port, listenbrainz_port = free_port(), free_port()
    prom = f"http://127.0.0.1:{prom_port}"
    with open(os.path.join(work, "config.toml"), "w") as f:
        f.write(CONFIG.format(sim_port=sim_port, daemon_port=daemon_port, tls_port=tls_port,
                              librefm_port=librefm_port, listenbrainz_port=listenbrainz_port))
    stop_front = threading.Event()
    ca = None
    if not args.demo:
        ca, leaf, key = make_certificates(work)
        tls_front(tls_port, sim_port, leaf, key, stop_front)
    hooks = Notifications()
    hook = start_webhook(hooks)
    amcfg = rewrite_alertmanager(work, f"http://127.0.0.1:{hook.server_address[1]}/hook/lastfm-monitor")
    rules = rewrite_rules(work, args.for_scale, args.min_for, log)
    with open(os.path.join(work, "prometheus.yml"), "w") as f:
        f.write(PROMETHEUS.format(rules=rules, daemon_port=daemon_port, am_port=am_port))

    procs = []
    env = dict(os.environ, LASTFM_API_KEY="0123456789abcdef0123456789abcdef", RUST_LOG="warn")
    if ca:
        env["SSL_CERT_FILE"] = ca  # the daemon's system trust store, replaced by the test's CA

    def spawn(name, argv, **kw):
        out = open(os.path.join(work, f"{name}.log"), "w")
        p = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, env=env, **kw)
        procs.append((name, p))
        return p

    ok = False
    history = None
    try:
        spawn("alertmanager", [args.alertmanager, f"--config.file={amcfg}",
                               f"--storage.path={work}/am",
                               f"--web.listen-address=127.0.0.1:{am_port}",
                               "--cluster.listen-address="])
        if args.demo:
            spawn("daemon", [args.binary, "demo", "--web.listen-address", f"127.0.0.1:{daemon_port}"])
        else:
            ts = time.time()  # the scenario's clock starts with the simulator
            spawn("simulator", [args.binary, "simulate", "--listen", f"127.0.0.1:{sim_port}",
                                "--scenario", SCENARIO])
            # The personalities are in the files.
            spawn("simulator-librefm", [args.binary, "simulate", "--listen", f"127.0.0.1:{librefm_port}",
                                        "--scenario", LIBREFM_SCENARIO])
            spawn("simulator-listenbrainz", [args.binary, "simulate", "--listen",
                                             f"127.0.0.1:{listenbrainz_port}", "--scenario", LISTENBRAINZ_SCENARIO])
            spawn("daemon", [args.binary, "--config.file", os.path.join(work, "config.toml")])
        spawn("prometheus", [args.prometheus, f"--config.file={work}/prometheus.yml",
                             f"--storage.tsdb.path={work}/data",
                             f"--web.listen-address=127.0.0.1:{prom_port}"])
        wait_http(f"http://127.0.0.1:{daemon_port}/-/ready", start + 20, "the daemon")
        wait_http(f"{prom}/-/ready", start + 30, "Prometheus")
        wait_http(f"http://127.0.0.1:{am_port}/-/ready", start + 30, "Alertmanager")
        t0 = time.time()
        log(f"daemon :{daemon_port}, simulator :{sim_port}, prometheus :{prom_port}, "
            f"alertmanager :{am_port}, work dir {work}")
        if not args.demo:
            log(f"simulators: Libre.fm :{librefm_port}, ListenBrainz :{listenbrainz_port}")

        if args.demo:
            ok = demo_checks(prom, t0, deadline, log) == 0
        else:
            history = AlertHistory(prom)
            ok = scenario_checks(prom, t0, ts, deadline, hooks, history, log) == 0
    finally:
        if history:
            history.stop.set()
        hook.shutdown()
        stop_front.set()
        for name, p in reversed(procs):
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for name, p in reversed(procs):
            try:
                rc = p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()
                rc = "killed"
            if name == "daemon" and rc not in (0,):
                log(f"daemon exit status {rc} (expected 0)")
                ok = False
        if not ok:
            for name, _ in procs:
                path = os.path.join(work, f"{name}.log")
                with open(path) as f:
                    tail = f.read()[-3000:]
                log(f"--- {name}.log (tail) ---\n{tail}")
        if args.keep or not ok:
            log(f"work dir kept: {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    log(f"done in {time.time() - start:.0f}s")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
