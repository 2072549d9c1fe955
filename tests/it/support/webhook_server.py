"""A webhook endpoint for the tests, standard library only, that checks the
Standard Webhooks 1.0 signature itself (hmac + hashlib, not our code).

    python3 webhook_server.py SECRET RECORD_FILE ANSWERS [CERT_FILE KEY_FILE]

SECRET is whsec_<base64>. ANSWERS is a comma-separated list of what to answer
to the 1st, 2nd, ... request: an HTTP status (200, 500, 429, 400, ...) or
`hang` (never answer); after the list, 200. Each request is appended to
RECORD_FILE as one JSON line (before it is answered): its webhook headers,
whether the signature verified, the status given, and the body's JSON.
Prints "port N" once listening on 127.0.0.1. With CERT_FILE and KEY_FILE (PEM)
it serves HTTPS (Python's ssl module) with that certificate.
"""

import base64
import hashlib
import hmac
import json
import ssl
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

SECRET, RECORD, ANSWERS = sys.argv[1], sys.argv[2], sys.argv[3]
KEY = base64.b64decode(SECRET.removeprefix("whsec_"))
PLAN = [a for a in ANSWERS.split(",") if a]
LOCK = threading.Lock()
COUNT = [0]


def verified(headers, body):
    msg_id = headers.get("webhook-id", "")
    timestamp = headers.get("webhook-timestamp", "")
    signed = f"{msg_id}.{timestamp}.".encode() + body
    expected = base64.b64encode(hmac.new(KEY, signed, hashlib.sha256).digest()).decode()
    fresh = timestamp.isdigit() and abs(time.time() - int(timestamp)) < 300
    signatures = headers.get("webhook-signature", "").split(" ")
    matches = any(
        s.startswith("v1,") and hmac.compare_digest(s[3:], expected) for s in signatures
    )
    return fresh and matches


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_POST(self):
        length = int(self.headers.get("content-length", "0"))
        body = self.rfile.read(length)
        with LOCK:
            n = COUNT[0]
            COUNT[0] += 1
            answer = PLAN[n] if n < len(PLAN) else "200"
            try:
                parsed = json.loads(body)
            except ValueError:
                parsed = None
            record = {
                "id": self.headers.get("webhook-id"),
                "timestamp": self.headers.get("webhook-timestamp"),
                "content_type": self.headers.get("content-type"),
                "verified": verified(self.headers, body),
                "answer": answer,
                "body": parsed,
            }
            with open(RECORD, "a") as f:
                f.write(json.dumps(record) + "\n")
        if answer == "hang":
            time.sleep(3600)
            return
        reply = b"ok"
        self.send_response(int(answer))
        self.send_header("content-length", str(len(reply)))
        self.end_headers()
        self.wfile.write(reply)

    def log_message(self, *args):
        pass


class Server(ThreadingHTTPServer):
    def handle_error(self, request, client_address):
        # A client that refused our certificate (a test of exactly that).
        if isinstance(sys.exc_info()[1], ssl.SSLError):
            return
        super().handle_error(request, client_address)


server = Server(("127.0.0.1", 0), Handler)
server.daemon_threads = True
if len(sys.argv) > 5:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(sys.argv[4], sys.argv[5])
    # The handshake happens in the request's thread, not in accept().
    server.socket = context.wrap_socket(
        server.socket, server_side=True, do_handshake_on_connect=False
    )
print(f"port {server.server_address[1]}", flush=True)
server.serve_forever()
