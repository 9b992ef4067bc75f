#!/usr/bin/env python3
"""Serve a directory on 127.0.0.1 (kernel-chosen port) for the e2e scripts and the bench.

Like `python3 -m http.server` (same "Serving HTTP on ... port N" line, same access log
on stderr), with two changes that matter to a client fetching many files at once:
HTTP/1.1 keep-alive (a client can reuse its connections, as apt and reqwest do) and a
listen backlog of 128 instead of 5 (with 5, parallel connects beyond the backlog lose
their SYN and wait a full second for the retransmission — a stall of the mirror, not
of the client being measured).

    scripts/serve.py DIR
"""
import functools
import http.server
import sys


class Handler(http.server.SimpleHTTPRequestHandler):
    protocol_version = "HTTP/1.1"


class Server(http.server.ThreadingHTTPServer):
    request_queue_size = 128
    daemon_threads = True


def main():
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    handler = functools.partial(Handler, directory=sys.argv[1])
    with Server(("127.0.0.1", 0), handler) as httpd:
        host, port = httpd.socket.getsockname()[:2]
        print(f"Serving HTTP on {host} port {port} (http://{host}:{port}/) ...", flush=True)
        try:
            httpd.serve_forever()
        except KeyboardInterrupt:
            pass


if __name__ == "__main__":
    main()
