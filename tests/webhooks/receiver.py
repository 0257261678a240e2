"""A webhook receiver, run as its own process on loopback by the tests:

    python -m tests.webhooks.receiver PORT LOG SECRET [SECRET...] [--fail-first N]

It writes one JSON line per request to LOG (method, path, headers, body, whether the
signature verified with any of the secrets, and what it answered), and answers 500 to the
first N requests, 200 after. It checks signatures with ``fleetconfig.webhook_signature``,
the helper receivers are told to use.
"""

from __future__ import annotations

import argparse
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from fleetconfig.webhook_signature import HEADER, InvalidSignature, verify


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("port", type=int)
    parser.add_argument("log")
    parser.add_argument("secrets", nargs="+")
    parser.add_argument("--fail-first", type=int, default=0)
    args = parser.parse_args()
    lock = threading.Lock()
    served = {"count": 0}

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            try:
                verify(body, self.headers.get(HEADER), args.secrets)
                verified, reason = True, None
            except InvalidSignature as error:
                verified, reason = False, str(error)
            with lock:
                served["count"] += 1
                status = 500 if served["count"] <= args.fail_first else 200
                line = {
                    "received_at": time.time(),
                    "path": self.path,
                    "headers": dict(self.headers.items()),
                    "body": body.decode("utf-8"),
                    "verified": verified,
                    "reason": reason,
                    "answered": status,
                }
                with open(args.log, "a", encoding="utf-8") as log:
                    log.write(json.dumps(line) + "\n")
            answer = b"receiver broken" if status == 500 else b"ok"
            self.send_response(status)
            self.send_header("Content-Length", str(len(answer)))
            self.end_headers()
            self.wfile.write(answer)

        def log_message(self, *_args: object) -> None:
            pass

    ThreadingHTTPServer(("127.0.0.1", args.port), Handler).serve_forever()


if __name__ == "__main__":
    main()
