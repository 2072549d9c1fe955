#!/usr/bin/env python3
"""An HTTP stage hook for net-receiver, standard library only.

A small real policy, one rule per stage (see docs/hooks.md):

  mail_from  per-sender quota: at most QUOTA_PER_HOUR transactions per sender
             address in the last hour, then 450 4.7.1 until the hour has passed
  rcpt_to    greylisting: the first attempt of a (client IP, sender, recipient)
             triplet gets 451 4.7.1; a retry after GREYLIST_DELAY seconds passes,
             and the triplet is then known for 36 days
  data       adds an X-Policy header with what the two checks found, and
             records the same under "extensions" (the JSON line shows it)

Every other stage answers 204 (continue). State is kept in memory.

Usage: hook.py [PORT]   (default 8025; 0 picks a free port)
It listens on 127.0.0.1 and prints "listening on http://127.0.0.1:PORT/" once
ready. Environment: GREYLIST_DELAY (seconds, default 300), QUOTA_PER_HOUR
(default 100).
"""

import json
import os
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

GREYLIST_DELAY = float(os.environ.get("GREYLIST_DELAY", "300"))
QUOTA_PER_HOUR = int(os.environ.get("QUOTA_PER_HOUR", "100"))
KNOWN_FOR = 36 * 24 * 3600
MAX_REQUEST = 64 << 20

lock = threading.Lock()
first_seen = {}  # (ip, sender, recipient) -> time of the first attempt
passed = {}  # (ip, sender, recipient) -> time it last passed
sent = {}  # sender -> times of its recent transactions


def sender_of(mail, command=None):
    record = command if command is not None else (mail.get("mailfrom") or {})
    return (record.get("url") or "<>").lower()


def quota(mail, command, now):
    sender = sender_of(mail, command)
    with lock:
        recent = [t for t in sent.get(sender, []) if now - t < 3600]
        if len(recent) >= QUOTA_PER_HOUR:
            sent[sender] = recent
            return {"action": "tempfail",
                    "reply": {"code": 450, "enhanced": "4.7.1",
                              "text": f"Sender quota of {QUOTA_PER_HOUR} per hour reached"}}
        recent.append(now)
        sent[sender] = recent
    return {"action": "continue", "extensions": {"quota_used": len(recent)}}


def greylist(mail, command, now):
    triplet = (mail.get("remote_ip", ""), sender_of(mail), (command.get("url") or "").lower())
    with lock:
        if now - passed.get(triplet, -KNOWN_FOR) < KNOWN_FOR:
            passed[triplet] = now
            return {"action": "continue", "extensions": {"greylist": "known"}}
        first = first_seen.get(triplet)
        if first is None:
            first_seen[triplet] = first = now  # a first attempt never passes
        elif now - first >= GREYLIST_DELAY:
            del first_seen[triplet]
            passed[triplet] = now
            return {"action": "continue", "extensions": {"greylist": "passed"}}
    wait = max(GREYLIST_DELAY - (now - first), 0)
    return {"action": "tempfail",
            "reply": {"code": 451, "enhanced": "4.7.1",
                      "text": f"Greylisted, try again in {wait:.0f} seconds"}}


def add_header(mail):
    found = mail.get("extensions") or {}
    value = f"greylist={found.get('greylist', 'none')}; quota_used={found.get('quota_used', 0)}"
    return {"action": "continue",
            "add_headers": [{"name": "X-Policy", "value": value}],
            "extensions": {"policy": value}}


class Hook(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive: net-receiver reuses connections

    def do_POST(self):
        length = int(self.headers.get("Content-Length") or 0)
        if length > MAX_REQUEST:
            return self.answer(413, None)
        try:
            request = json.loads(self.rfile.read(length))
        except ValueError:
            return self.answer(400, None)
        stage, mail = request.get("stage"), request.get("mail") or {}
        command, now = request.get("command") or {}, time.time()
        if stage == "mail_from":
            verdict = quota(mail, command, now)
        elif stage == "rcpt_to":
            verdict = greylist(mail, command, now)
        elif stage == "data":
            verdict = add_header(mail)
        else:
            verdict = None
        self.answer(200 if verdict else 204, verdict)

    def answer(self, status, verdict):
        body = json.dumps(verdict).encode() if verdict else b""
        self.send_response(status)
        if body:
            self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass  # quiet; net-receiver logs what matters


def main():
    port = int(sys.argv[1]) if len(sys.argv) > 1 else 8025
    server = ThreadingHTTPServer(("127.0.0.1", port), Hook)
    print(f"listening on http://127.0.0.1:{server.server_address[1]}/", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
