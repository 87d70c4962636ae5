"""Who a web request belongs to, checked before anything is served.

With a tokens file every request needs a valid token: given once in the URL
(``?token=``, then answered with a redirect that drops it from the address bar
and history) and kept in an HttpOnly cookie. Without one (loopback only) every
request is the operator who started ``serve``, but only under a loopback host
name, so a web page elsewhere cannot reach it by DNS rebinding. The websocket
that drives a dashboard must come from this server's own page (Origin check).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from urllib.parse import urlsplit

from aiohttp import web

from tui.web.tokens import Identity, Role, Tokens

COOKIE = "loopdeck_token"
IDENTITY_KEY = web.RequestKey("identity", Identity)
LOOPBACK_NAMES = frozenset({"localhost", "127.0.0.1", "::1"})

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def is_loopback(host: str) -> bool:
    """Whether binding ``host`` keeps the server on this machine."""
    if host.strip("[]") in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


@dataclass(frozen=True)
class Access:
    """The access rule of one ``serve``: a tokens file, or the local operator on loopback."""

    tokens: Tokens | None
    local: Identity  # who every request is when there are no tokens
    read_only: bool = False  # serve --read-only: every dashboard is a viewer's

    def describe(self) -> str:
        """What ``serve`` prints at start (never a token)."""
        who = (
            f"tokens: {self.tokens.describe()}"
            if self.tokens is not None
            else f"no tokens: loopback only, as {self.local.name}"
        )
        return who + (", all read-only" if self.read_only else "")

    @web.middleware
    async def middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        identity = self._identify(request)
        if isinstance(identity, web.StreamResponse):
            return identity
        if request.headers.get("Upgrade", "").lower() == "websocket" and not _same_origin(request):
            return _refuse(403, "the dashboard's websocket must be opened by this server's own page")
        if self.read_only:
            identity = Identity(identity.name, Role.VIEWER)
        request[IDENTITY_KEY] = identity
        return await handler(request)

    def _identify(self, request: web.Request) -> Identity | web.StreamResponse:
        if self.tokens is None:
            if _host_name(request.host) not in LOOPBACK_NAMES:
                return _refuse(403, "this server answers on a loopback address only (localhost, 127.0.0.1)")
            return self.local
        given = request.query.get("token")
        if given is not None:
            identity = self.tokens.find(given)
            if identity is None:
                return _refuse(401, "the token is not valid; ask the operator who runs `loopdeck serve` for one")
            return _keep_in_cookie(request, given)
        identity = self.tokens.find(request.cookies.get(COOKIE))
        if identity is None:
            return _refuse(401, "a token is needed: open the address you were given, with ?token=...")
        return identity


def _keep_in_cookie(request: web.Request, token: str) -> web.StreamResponse:
    """Redirect to the same address without the token, which now lives in an HttpOnly cookie."""
    query = {k: v for k, v in request.query.items() if k != "token"}
    location = request.rel_url.with_query(query) if query else request.rel_url.with_query(None)
    response = web.HTTPSeeOther(location=str(location))
    response.set_cookie(
        COOKIE, token, httponly=True, samesite="Strict", secure=_is_https(request), path="/", max_age=30 * 86400
    )
    return response


def _refuse(status: int, why: str) -> web.Response:
    return web.Response(status=status, text=f"loopdeck: {why}\n", content_type="text/plain")


def _is_https(request: web.Request) -> bool:
    return request.secure or request.headers.get("X-Forwarded-Proto", "").lower() == "https"


def _host_name(host: str) -> str:
    """``127.0.0.1:8765`` -> ``127.0.0.1``; ``[::1]:8765`` -> ``::1``."""
    return (urlsplit(f"//{host}").hostname or "").lower()


def _same_origin(request: web.Request) -> bool:
    """A browser always sends Origin with a websocket; it must name the host the page came from."""
    origin = request.headers.get("Origin")
    if origin is None:
        return False
    return urlsplit(origin).netloc.lower() == request.host.lower()
