#!/usr/bin/env python3
"""TLS front door for the simulator (dashboards/e2e-vantage.py): Last.fm is https-only.

Listens on ADDR:PORT with the test's certificate, and pipes every accepted connection to the plain
HTTP backend named in BACKEND_FILE ("host:port"), read afresh for each connection, so the test
switches Last.fm's behaviour (healthy / offline simulator) without a moment where nothing answers.
A backend that refuses closes the client connection. SIGHUP reloads the certificate and key from
their paths (the test swaps in a certificate about to expire). Standard library only; bounded:
every socket has a timeout and the process exits on SIGTERM.

Usage: tlsproxy.py --listen 203.0.113.10:443 --cert leaf.pem --key leaf.key --backend-file FILE
"""

import argparse
import select
import signal
import socket
import ssl
import sys
import threading


def pipe(client, backend):
    socks = [client, backend]
    try:
        while True:
            # A TLS socket may hold decrypted bytes select() cannot see.
            ready = [client] if client.pending() else select.select(socks, [], [], 30)[0]
            if not ready:
                return
            for s in ready:
                data = s.recv(65536)
                if not data:
                    return
                (backend if s is client else client).sendall(data)
    except OSError:
        return


def serve(conn, ctx, backend_file):
    conn.settimeout(10)
    try:
        client = ctx.wrap_socket(conn, server_side=True)
    except (OSError, ssl.SSLError):
        conn.close()
        return
    try:
        with open(backend_file) as f:
            host, port = f.read().strip().rsplit(":", 1)
        backend = socket.create_connection((host, int(port)), timeout=5)
    except OSError:
        client.close()
        return
    try:
        pipe(client, backend)
    finally:
        backend.close()
        try:
            client.close()
        except OSError:
            pass


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--listen", required=True)
    ap.add_argument("--cert", required=True)
    ap.add_argument("--key", required=True)
    ap.add_argument("--backend-file", required=True)
    args = ap.parse_args()
    host, port = args.listen.rsplit(":", 1)
    state = {}

    def load(*_):
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(args.cert, args.key)
        state["ctx"] = ctx
        print(f"tlsproxy: certificate loaded from {args.cert}", flush=True)

    load()
    signal.signal(signal.SIGHUP, load)
    srv = socket.socket()
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind((host, int(port)))
    srv.listen(128)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    print(f"tlsproxy: listening on {args.listen}", flush=True)
    while True:
        conn, _ = srv.accept()
        threading.Thread(target=serve, args=(conn, state["ctx"], args.backend_file), daemon=True).start()


if __name__ == "__main__":
    main()
