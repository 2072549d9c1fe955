#!/usr/bin/python3
"""A test milter (Debian's python3-milter, libmilter underneath) whose answer
depends on the envelope: the local part of a recipient (or of the sender)
names what it does. Everything else: continue.

  sender rejectme@     MAIL  reject
  reject@              RCPT  reject            tempfail@   RCPT  tempfail
  replycode@           RCPT  550 5.7.1 Go away, replycode
  discard@             end of message: discard
  eomreject@           end of message: 554 5.7.1 Rejected at end of message
  addheader@           add X-Test-Milter: added
  insheader@           insert X-Inserted: top at index 0
  chgheader@           Subject becomes "changed by milter"
  delheader@           delete the first X-Remove-Me
  replbody@            body becomes "replaced body\r\n"
  addrcpt@             add <added@example.com>
  delrcpt@             delete <other@example.com>
  chgfrom@             sender becomes <new-sender@example.com>
  quarantine@          quarantine "test quarantine"

Usage: test_milter.py SOCKET LOGFILE   (SOCKET: unix:/path or inet:PORT@HOST)
Each message's headers (as received, leading spaces kept), body and macros
are appended to LOGFILE as one JSON line.
"""
import json
import sys

import Milter


class TestMilter(Milter.Base):
    def __init__(self):
        self.sender = ""
        self.rcpts = []
        self.headers = []
        self.content = b""
        self.macros = {}
        self.helo = None
        self.client = None

    def connect(self, hostname, family, hostaddr):
        self.macros["j"] = self.getsymval("j")
        self.macros["_"] = self.getsymval("_")
        self.client = [hostname, str(hostaddr[0]) if hostaddr else None]
        return Milter.CONTINUE

    def hello(self, name):
        self.helo = name
        return Milter.CONTINUE

    def envfrom(self, mailfrom, *params):
        self.sender = mailfrom
        self.rcpts = []
        self.headers = []
        self.content = b""
        self.macros["mail_addr"] = self.getsymval("{mail_addr}")
        self.macros["i"] = self.getsymval("i")
        if mailfrom.lower().startswith("<rejectme@"):
            return Milter.REJECT
        return Milter.CONTINUE

    def envrcpt(self, to, *params):
        local = to.strip("<>").split("@")[0].lower()
        self.macros.setdefault("rcpt_addr", []).append(self.getsymval("{rcpt_addr}"))
        if local == "reject":
            return Milter.REJECT
        if local == "tempfail":
            return Milter.TEMPFAIL
        if local == "replycode":
            self.setreply("550", "5.7.1", "Go away, replycode")
            return Milter.REJECT
        self.rcpts.append(local)
        return Milter.CONTINUE

    def header(self, name, value):
        self.headers.append([name, value])
        return Milter.CONTINUE

    def body(self, chunk):
        self.content += chunk
        return Milter.CONTINUE

    def eom(self):
        with open(sys.argv[2], "a") as log:
            log.write(json.dumps({
                "sender": self.sender,
                "rcpts": self.rcpts,
                "helo": self.helo,
                "client": self.client,
                "headers": self.headers,
                "body": self.content.decode("utf-8", "replace"),
                "macros": self.macros,
            }) + "\n")
        wants = set(self.rcpts)
        if "discard" in wants:
            return Milter.DISCARD
        if "eomreject" in wants:
            self.setreply("554", "5.7.1", "Rejected at end of message")
            return Milter.REJECT
        if "addheader" in wants:
            self.addheader("X-Test-Milter", "added")
        if "insheader" in wants:
            self.addheader("X-Inserted", "top", 0)
        if "chgheader" in wants:
            self.chgheader("Subject", 1, "changed by milter")
        if "delheader" in wants:
            self.chgheader("X-Remove-Me", 1, "")
        if "replbody" in wants:
            self.replacebody(b"replaced body\r\n")
        if "addrcpt" in wants:
            self.addrcpt("<added@example.com>")
        if "delrcpt" in wants:
            self.delrcpt("<other@example.com>")
        if "chgfrom" in wants:
            self.chgfrom("<new-sender@example.com>")
        if "quarantine" in wants:
            self.quarantine("test quarantine")
        return Milter.CONTINUE

    def close(self):
        return Milter.CONTINUE


def protocol_mask(klass):
    """pymilter's own mask (steps without a callback left out), but with
    header values keeping their leading spaces (SMFIP_HDR_LEADSPC)."""
    mask = Milter.P_RCPT_REJ
    for name, (no_reply, no_call) in Milter.OPTIONAL_CALLBACKS.items():
        asked = getattr(getattr(klass, name), "milter_protocol", 0)
        mask |= (no_reply | no_call) & ~asked
    return mask


TestMilter._protocol_mask = protocol_mask(TestMilter)


def main():
    Milter.factory = TestMilter
    Milter.set_flags(Milter.ADDHDRS | Milter.CHGHDRS | Milter.CHGBODY
                     | Milter.ADDRCPT | Milter.DELRCPT | Milter.CHGFROM
                     | Milter.QUARANTINE)
    sys.stdout.write("ready\n")
    sys.stdout.flush()
    Milter.runmilter("testmilter", sys.argv[1], timeout=60)


if __name__ == "__main__":
    main()
