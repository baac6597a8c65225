"""The customer's plan for mail, as the peer of benches/mail.rs: each invitation is built with
Python's email package (text + HTML) and sent with smtplib while the request waits, one SMTP
connection per message (as an inline `send_device_invite` in a FastAPI handler does), to the same
aiosmtpd server (tests/it/smtp_server.py). Also the best case: one connection for every message.

    mail_smtplib.py [N]    (default 1000)
"""

import html
import os
import subprocess
import sys
import tempfile
import time
import smtplib
from email.message import EmailMessage

HERE = os.path.dirname(os.path.abspath(__file__))


def invite(i):
    sn = "PV-26A18-BC02R-%05d" % i
    m = EmailMessage()
    m["From"] = "Vesper Devices <devices@vesper.example>"
    m["To"] = "customer%d@example.com" % i
    m["Subject"] = "Your Vesper device is ready"
    name = "Ada"
    m.set_content("Hello %s,\n\nYour Vesper device is ready.\n\nSerial Number: %s\n\n"
                  "Open the Vesper app and enter this serial number to get started.\n" % (name, sn))
    m.add_alternative("<p>Hello %s,</p><h2>Your Vesper device is ready</h2><p>Serial Number: "
                      "<strong>%s</strong></p><p>Open the Vesper app and enter this serial number "
                      "to get started.</p>" % (html.escape(name), sn), subtype="html")
    return m


def server():
    inbox = tempfile.mkdtemp()
    p = subprocess.Popen([sys.executable, os.path.join(HERE, "..", "tests", "it", "smtp_server.py"),
                          inbox], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    port = int(p.stdout.readline().split()[1])
    return p, port, inbox


def run(n, reuse):
    p, port, inbox = server()
    try:
        start = time.perf_counter()
        if reuse:
            with smtplib.SMTP("127.0.0.1", port) as s:
                for i in range(n):
                    s.send_message(invite(i))
        else:
            for i in range(n):
                with smtplib.SMTP("127.0.0.1", port) as s:
                    s.send_message(invite(i))
        elapsed = time.perf_counter() - start
        assert len([f for f in os.listdir(inbox) if f.endswith(".eml")]) == n
        return elapsed
    finally:
        p.kill()
        p.wait()


def main():
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 1000
    print("python smtplib, %d invitations to the same aiosmtpd server:" % n)
    t = run(n, reuse=False)
    print("  one connection per message (inline in the request): %.2f s (%.0f messages/s)" % (t, n / t))
    t = run(n, reuse=True)
    print("  one connection for all (best case):                 %.2f s (%.0f messages/s)" % (t, n / t))


if __name__ == "__main__":
    main()
