#!/usr/bin/env python3
"""End-to-end proof of the dashboards and alert rules against a real Prometheus.

Starts, all on 127.0.0.1 with free ports:
  1. `lastfm-monitor simulate` with a scripted scenario (dashboards/e2e/scenario.toml):
     healthy, a mix of upstream errors, service offline (error 11), key suspended (error 26);
  2. the real daemon, probing the simulator every second;
  3. Prometheus, scraping the daemon every second with the shipped rules loaded
     (dashboards/prometheus/lastfm-monitor.rules.yml, evaluated every second).

A second target, `lastfm-tls`, reaches the same simulator through a TLS front (a certificate the
test's own CA signed, valid for 7 days, trusted through SSL_CERT_FILE), so the certificate
gauge has data and LastfmCertificateExpiringSoon must fire; a `[[references]]` (the simulator's
root, a 404 that counts as reachable) gives the reference series data.

Then it asserts that the LastfmServiceOffline alert becomes pending or firing during the error-11
phase and LastfmApiKeySuspended during the error-26 phase, and finally evaluates every PromQL
expression of the dashboard JSON, the Grafana alert rules and the Prometheus rules through the
HTTP API (dashboards/queries.py): none may error, and at least 90% must return data.

With --demo it instead runs `lastfm-monitor demo` (the built-in simulator and incident timeline)
with Prometheus scraping it for 75 s, then requires at least one alert pending or firing and at
least 80% of the shipped queries to return data (none may error).

Usage: python3 dashboards/e2e.py [--demo] [--binary target/debug/lastfm-monitor] [--keep]
Needs `prometheus` on PATH (Debian's package). Bounded: gives up after --deadline seconds (180).
Standard library only.
"""

import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
RULES = os.path.join(HERE, "prometheus", "lastfm-monitor.rules.yml")
SCENARIO = os.path.join(HERE, "e2e", "scenario.toml")

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
"""

PROMETHEUS = """
global:
  scrape_interval: 1s
  evaluation_interval: 1s
rule_files:
  - {rules}
scrape_configs:
  - job_name: lastfm-monitor
    static_configs:
      - targets: ["127.0.0.1:{daemon_port}"]
"""


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


def run_queries(prom, min_data, log, window=None):
    """Every shipped expression through Prometheus, alert rules included in the data share. With
    `window`, an expression counts as returning data if it did at any moment of the last `window`
    seconds (alert rules return data only while their incident lasts)."""
    argv = [sys.executable, os.path.join(HERE, "queries.py"), "--prom", prom, "--min-data",
            str(min_data), "--include-alerts"]
    if window:
        argv += ["--window", str(window)]
    checker = subprocess.run(
        argv,
        capture_output=True, text=True, timeout=120)
    summary = [l for l in checker.stdout.splitlines() if not l.startswith("{")]
    for line in checker.stdout.splitlines():
        if line.startswith("{") and ('"error"' in line or '"empty"' in line):
            log(f"query: {line}")
    log("queries: " + " | ".join(summary + checker.stderr.splitlines()))
    return checker.returncode


def demo_checks(prom, t0, deadline, log):
    """`lastfm-monitor demo` scraped for 75 s: an alert pending or firing, >= 80% of queries with data."""
    while time.time() < min(deadline - 30, t0 + 75):
        time.sleep(1)
    states = sorted(alert_states(prom))
    log(f"alerts after 75 s: {states}")
    failures = []
    if not any(state in ("pending", "firing") for (_, state) in states):
        failures.append("no alert pending or firing after 75 s of the demo")
    if run_queries(prom, 0.8, log) != 0:
        failures.append("queries.py --prom --min-data 0.8 failed")
    for f in failures:
        log(f"FAIL: {f}")
    if not failures:
        log("PASS: demo scraped 75 s; every query valid, >= 80% with data, an alert pending or firing")
    return 1 if failures else 0


def scenario_checks(prom, t0, deadline, log):
    """The scripted scenario: alerts for 11 and 26, then every query valid and >= 90% with data."""
    # Timeline (dashboards/e2e/scenario.toml), from the simulator's start:
    #   0-25 s healthy, 25-45 s upstream errors, 45-80 s error 11, 80-115 s error 26, then healthy.
    failures = []
    if not wait_alert(prom, "LastfmServiceOffline", min(deadline, t0 + 85), log):
        failures.append("LastfmServiceOffline never became pending or firing during the error-11 phase")
    if not wait_alert(prom, "LastfmApiKeySuspended", min(deadline, t0 + 120), log):
        failures.append("LastfmApiKeySuspended never became pending or firing during the error-26 phase")
    # The TLS target's 7-day certificate: its gauge holds the leaf's notAfter, and the alert fires.
    days = prom_query(prom, '(lastfm_tls_certificate_not_after_timestamp_seconds{target="lastfm-tls"} - time()) / 86400')
    log(f"lastfm-tls certificate days left: {[r['value'][1] for r in days]}")
    if not days or not 6.0 < float(days[0]["value"][1]) <= 7.0:
        failures.append("the TLS target's certificate gauge is not the 7-day leaf's notAfter")
    if not wait_alert(prom, "LastfmCertificateExpiringSoon", min(deadline, t0 + 125), log):
        failures.append("LastfmCertificateExpiringSoon never became pending or firing for a 7-day certificate")
    # Let recovery produce a few healthy scrapes so rate() windows hold every kind of sample.
    while time.time() < min(deadline - 20, t0 + 125):
        time.sleep(1)
    up = prom_query(prom, 'up{job="lastfm-monitor"}')
    log(f"up = {[r['value'][1] for r in up]}")
    if run_queries(prom, 0.9, log, window=time.time() - t0) != 0:
        failures.append("queries.py --prom --min-data 0.9 --window (whole run) failed")
    for f in failures:
        log(f"FAIL: {f}")
    if not failures:
        log("PASS: every shipped query is valid, >= 90% return data, alerts for 11 and 26 fired")
    return 1 if failures else 0


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--binary", default=os.path.join(ROOT, "target", "debug", "lastfm-monitor"))
    ap.add_argument("--prometheus", default=shutil.which("prometheus") or "prometheus")
    ap.add_argument("--deadline", type=float, default=180.0)
    ap.add_argument("--keep", action="store_true", help="keep the temp dir for inspection")
    ap.add_argument("--demo", action="store_true", help="scrape `lastfm-monitor demo` for 75 s")
    args = ap.parse_args()

    start = time.time()
    deadline = start + args.deadline

    def log(msg):
        print(f"[e2e {time.time() - start:6.1f}s] {msg}", flush=True)

    if not os.path.exists(args.binary):
        raise SystemExit(f"e2e: build the daemon first ({args.binary} is missing): cargo build")
    work = tempfile.mkdtemp(prefix="lastfm-e2e-")
    sim_port, daemon_port, prom_port = free_port(), free_port(), free_port()
    tls_port = free_port()
    prom = f"http://127.0.0.1:{prom_port}"
    with open(os.path.join(work, "config.toml"), "w") as f:
        f.write(CONFIG.format(sim_port=sim_port, daemon_port=daemon_port, tls_port=tls_port))
    import threading
    stop_front = threading.Event()
    ca = None
    if not args.demo:
        ca, leaf, key = make_certificates(work)
        tls_front(tls_port, sim_port, leaf, key, stop_front)
    with open(os.path.join(work, "prometheus.yml"), "w") as f:
        f.write(PROMETHEUS.format(rules=RULES, daemon_port=daemon_port))

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
    try:
        if args.demo:
            spawn("daemon", [args.binary, "demo", "--web.listen-address", f"127.0.0.1:{daemon_port}"])
        else:
            spawn("simulator", [args.binary, "simulate", "--listen", f"127.0.0.1:{sim_port}",
                                "--scenario", SCENARIO])
            spawn("daemon", [args.binary, "--config.file", os.path.join(work, "config.toml")])
        spawn("prometheus", [args.prometheus, f"--config.file={work}/prometheus.yml",
                             f"--storage.tsdb.path={work}/data",
                             f"--web.listen-address=127.0.0.1:{prom_port}"])
        wait_http(f"http://127.0.0.1:{daemon_port}/-/ready", start + 20, "the daemon")
        wait_http(f"{prom}/-/ready", start + 30, "Prometheus")
        t0 = time.time()
        log(f"daemon :{daemon_port}, simulator :{sim_port}, prometheus :{prom_port}, work dir {work}")

        if args.demo:
            ok = demo_checks(prom, t0, deadline, log) == 0
        else:
            ok = scenario_checks(prom, t0, deadline, log) == 0
    finally:
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
