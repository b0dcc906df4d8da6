"""Where the server may listen and which Host it answers (no Streamlit here; :mod:`app.launch` uses it).

- Bound to a loopback address (127.0.0.1, ::1, localhost) the app is a
  single-user local tool and needs no accounts. Any other binding (0.0.0.0 in
  the Docker image, a LAN address) needs accounts (the users file named by
  ``$AMLKD_USERS``, or OpenID Connect in ``.streamlit/secrets.toml``), or the
  server refuses to start with one line saying how to configure them
  (:func:`launch_problem`).
- Every HTTP request and WebSocket whose ``Host`` is not one of the app's own
  names is refused with 400 (:class:`HostCheck`): a page on another site that
  rebinds its DNS name to this machine (DNS rebinding) reaches nothing. The
  names are the loopback names in local mode, plus the bound address and
  ``$AMLKD_ALLOWED_HOSTS`` (comma-separated) when shared (:func:`allowed_hosts`).
  Streamlit's own XSRF protection stays on (``server.enableXsrfProtection``,
  its default); :func:`launch_problem` refuses a configuration that turns it off.
"""

from __future__ import annotations

import ipaddress
import os
from urllib.parse import urlparse

HOSTS_ENV = "AMLKD_ALLOWED_HOSTS"
LOOPBACK_NAMES = ("127.0.0.1", "localhost", "::1")


def is_loopback(address: str | None) -> bool:
    """Whether a bind address reaches this machine only (an empty address binds every interface)."""
    address = (address or "").strip().strip("[]")
    if address == "localhost":
        return True
    try:
        return ipaddress.ip_address(address).is_loopback
    except ValueError:
        return False


def allowed_hosts(address: str | None, env: dict | None = None) -> tuple[str, ...]:
    """Host names the server answers to (lower case, no port)."""
    env = os.environ if env is None else env
    names = list(LOOPBACK_NAMES)
    address = (address or "").strip().strip("[]").lower()
    if address and address not in ("0.0.0.0", "::"):
        names.append(address)
    names += [h.strip().lower().rstrip(".") for h in env.get(HOSTS_ENV, "").split(",") if h.strip()]
    return tuple(dict.fromkeys(names))


def host_name(header: str | None) -> str | None:
    """The host name of a ``Host`` header (port and IPv6 brackets dropped); ``None`` when malformed."""
    if not header:
        return None
    try:
        parsed = urlparse(f"//{header}")
        _ = parsed.port  # a non-numeric or out-of-range port is malformed
    except ValueError:
        return None
    if parsed.hostname is None or parsed.username or parsed.password or parsed.path or parsed.query:
        return None
    return parsed.hostname.lower().rstrip(".")


def launch_problem(address: str | None, accounts: bool, xsrf: bool = True) -> str | None:
    """Why the server must not start (one line), or ``None``."""
    if not xsrf:
        return ("refusing to start: server.enableXsrfProtection is off; remove that setting (the app needs "
                "Streamlit's XSRF protection)")
    if is_loopback(address) or accounts:
        return None
    shown = address or "every interface"
    return (f"refusing to start on {shown} without accounts: add users with `AMLKD_USERS=/path/users.json "
            "python -m engine users add NAME --role admin` (password on standard input) and start with AMLKD_USERS "
            "set, or configure [auth] in .streamlit/secrets.toml, or bind to 127.0.0.1")


#: Sent with every HTTP answer: the page may load from this server (and data: / blob: URLs) only, so a name
#: that reached the page as markup still could not make the browser fetch anything elsewhere.
CONTENT_POLICY = ("default-src 'self'; img-src 'self' data: blob:; media-src 'self' data: blob:; "
                  "font-src 'self' data:; style-src 'self' 'unsafe-inline'; "
                  "script-src 'self' 'unsafe-inline' 'unsafe-eval' blob: data:; connect-src 'self'; "
                  "worker-src 'self' blob:; frame-src 'self'; object-src 'none'; base-uri 'self'; form-action 'self'")


class HostCheck:
    """ASGI middleware: answer 400 to any HTTP request or WebSocket whose Host is not in ``hosts``; send
    :data:`CONTENT_POLICY` with every other HTTP answer."""

    def __init__(self, app, hosts) -> None:
        self.app, self.hosts = app, frozenset(hosts)

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] in ("http", "websocket"):
            headers = dict(scope.get("headers") or [])
            name = host_name(headers.get(b"host", b"").decode("latin-1"))
            if name not in self.hosts:
                if scope["type"] == "websocket":
                    await send({"type": "websocket.close", "code": 1008})
                    return
                body = b"Invalid host header\n"
                await send({"type": "http.response.start", "status": 400,
                            "headers": [(b"content-type", b"text/plain"), (b"content-length", str(len(body)).encode())]})
                await send({"type": "http.response.body", "body": body})
                return
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_policy(message) -> None:
            if message["type"] == "http.response.start":
                headers = [(k, v) for k, v in message.get("headers", []) if k.lower() != b"content-security-policy"]
                headers.append((b"content-security-policy", CONTENT_POLICY.encode()))
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_with_policy)
