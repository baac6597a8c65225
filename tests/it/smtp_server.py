"""An SMTP server on loopback for the mail tests (aiosmtpd): it stores every accepted message as
DIR/N.eml with its envelope in DIR/N.json (written before the message, each whole), and can refuse, hold or delay on purpose.

    smtp_server.py DIR [--tls-cert CERT --tls-key KEY] [--auth USER:PASS]
                       [--reject-rcpt TEXT] [--hold-first SECONDS]

Prints "listening PORT" once it accepts connections; stops on SIGTERM or when stdin closes.
--tls-cert/--tls-key: STARTTLS offered and required before MAIL. --auth: AUTH PLAIN/LOGIN
required (after STARTTLS). --reject-rcpt: recipients containing TEXT get 550 5.1.1.
--hold-first: the first message is stored (accepted), DIR/held is written, and its 250 reply is
only sent after SECONDS (so that the client can be killed between acceptance and its record).
"""

import argparse
import asyncio
import json
import os
import socket
import ssl
import sys
import threading

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Store:
    def __init__(self, folder, reject, hold_first):
        self.folder = folder
        self.reject = reject
        self.hold_first = hold_first
        self.count = 0

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if self.reject and self.reject in address:
            return "550 5.1.1 <%s>: Recipient address rejected: User unknown" % address
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        self.count += 1
        n = self.count
        base = os.path.join(self.folder, str(n))
        # The envelope first, the message last: a reader that sees N.eml sees both whole.
        with open(base + ".json.part", "w") as f:
            json.dump({"mail_from": envelope.mail_from, "rcpt_tos": envelope.rcpt_tos,
                       "tls": session.ssl is not None,
                       "login": session.auth_data if session.authenticated else None}, f)
        os.replace(base + ".json.part", base + ".json")
        with open(base + ".eml.part", "wb") as f:
            f.write(envelope.original_content)
        os.replace(base + ".eml.part", base + ".eml")
        if n == 1 and self.hold_first:
            open(os.path.join(self.folder, "held"), "w").close()
            await asyncio.sleep(self.hold_first)
        return "250 2.0.0 Ok: queued as T%d" % n


def authenticator_for(user, password):
    def check(server, session, envelope, mechanism, auth_data):
        ok = (isinstance(auth_data, LoginPassword) and auth_data.login.decode() == user
              and auth_data.password.decode() == password)
        return AuthResult(success=ok, handled=False, auth_data=user if ok else None)
    return check


def main():
    p = argparse.ArgumentParser()
    p.add_argument("dir")
    p.add_argument("--tls-cert")
    p.add_argument("--tls-key")
    p.add_argument("--auth")
    p.add_argument("--reject-rcpt")
    p.add_argument("--hold-first", type=float, default=0)
    a = p.parse_args()
    os.makedirs(a.dir, exist_ok=True)
    kwargs = {}
    if a.tls_cert:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(a.tls_cert, a.tls_key)
        kwargs.update(tls_context=context, require_starttls=True)
    if a.auth:
        user, password = a.auth.split(":", 1)
        kwargs.update(authenticator=authenticator_for(user, password), auth_required=True,
                      auth_require_tls=bool(a.tls_cert))
    port = free_port()
    controller = Controller(Store(a.dir, a.reject_rcpt, a.hold_first), hostname="127.0.0.1",
                            port=port, server_hostname="localhost", **kwargs)
    controller.start()
    print("listening %d" % port, flush=True)
    done = threading.Event()
    threading.Thread(target=lambda: (sys.stdin.read(), done.set()), daemon=True).start()
    try:
        done.wait()
    finally:
        controller.stop()


if __name__ == "__main__":
    main()
