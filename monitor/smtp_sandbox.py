"""A local SMTP sink for tests and drills: accepts mail (with ``AUTH PLAIN`` when a password is set) and keeps it.

Written on the standard library (``socketserver``) rather than ``aiosmtpd``: the sink needs seven commands
(EHLO/HELO, AUTH PLAIN, MAIL, RCPT, DATA, RSET/NOOP, QUIT) and no TLS, and ``smtpd`` is gone from Python 3.12,
so a dependency (with its own two) would buy nothing the tests use. Messages are parsed with :mod:`email`.

    sink = SmtpSink(username="alerts", password="pw").start()
    ... smtplib.SMTP(sink.host, sink.port) ...
    sink.messages  # [email.message.EmailMessage, ...]
    sink.stop()
"""

from __future__ import annotations

import base64
import email
import email.policy
import socketserver
import threading
from email.message import EmailMessage


class _Handler(socketserver.StreamRequestHandler):
    server: _Server

    def reply(self, line: str) -> None:
        self.wfile.write(f"{line}\r\n".encode())

    def handle(self) -> None:
        sink = self.server.sink
        authed = not sink.password
        rcpts: list[str] = []
        self.reply("220 media-matrix smtp sandbox")
        while True:
            raw = self.rfile.readline(65536)
            if not raw:
                return
            line = raw.decode("utf-8", "replace").rstrip("\r\n")
            verb = line.split(" ", 1)[0].upper()
            if verb in ("EHLO", "HELO"):
                self.wfile.write(b"250-sandbox\r\n250-8BITMIME\r\n250 AUTH PLAIN\r\n")
            elif verb == "AUTH":
                parts = line.split()
                try:
                    _, user, password = base64.b64decode(parts[2]).decode().split("\0")
                except (IndexError, ValueError):
                    self.reply("501 AUTH PLAIN with its credentials on the line")
                    continue
                authed = user == sink.username and password == sink.password
                self.reply("235 ok" if authed else "535 authentication failed")
            elif verb == "MAIL":
                if not authed:
                    self.reply("530 authentication required")
                    continue
                rcpts = []
                self.reply("250 ok")
            elif verb == "RCPT":
                rcpts.append(line.split(":", 1)[1].strip().strip("<>"))
                self.reply("250 ok")
            elif verb == "DATA":
                self.reply("354 end with <CRLF>.<CRLF>")
                body = bytearray()
                while True:
                    chunk = self.rfile.readline(1 << 20)
                    if not chunk or chunk in (b".\r\n", b".\n"):
                        break
                    body += chunk[1:] if chunk.startswith(b"..") else chunk  # dot-unstuffing
                message = email.message_from_bytes(bytes(body), policy=email.policy.default)
                with sink.lock:
                    sink.messages.append(message)  # type: ignore[arg-type]
                    sink.recipients.append(list(rcpts))
                self.reply("250 queued")
            elif verb in ("RSET", "NOOP"):
                self.reply("250 ok")
            elif verb == "QUIT":
                self.reply("221 bye")
                return
            else:
                self.reply("502 not implemented")


class _Server(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True
    sink: SmtpSink


class SmtpSink:
    """The sink: ``start()`` listens on a free loopback port; ``messages`` and their ``recipients`` are kept."""

    def __init__(self, *, username: str = "", password: str = "", host: str = "127.0.0.1") -> None:
        self.username, self.password, self.host = username, password, host
        self.port = 0
        self.messages: list[EmailMessage] = []
        self.recipients: list[list[str]] = []
        self.lock = threading.Lock()
        self._server: _Server | None = None

    def start(self) -> SmtpSink:
        """Listen in a daemon thread; returns ``self``."""
        self._server = _Server((self.host, 0), _Handler)
        self._server.sink = self
        self.port = self._server.server_address[1]
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        """Stop listening (idempotent)."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
