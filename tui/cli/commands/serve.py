"""``loopdeck serve``: check the address and the tokens, make sure the database is there, then serve until stopped."""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sys
from dataclasses import dataclass
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from core import BadInput, Orchestrator, default_user, display_url, resolve_db_url
from tui.cli.output import EXIT_OK, out
from tui.text.literal import literal

if TYPE_CHECKING:
    from tui.web.access import Access  # imported with aiohttp, only when serve runs


@dataclass(frozen=True)
class Prepared:
    access: Access
    public_url: str | None


async def prepare(args: argparse.Namespace) -> Prepared:
    """Refuse a bad address, tokens file or public URL before anything opens (exit 2)."""
    from tui.web.access import Access, is_loopback
    from tui.web.server import TOKENS_ENV
    from tui.web.tokens import Identity, Role, TokensError, load_tokens

    path = args.tokens or os.environ.get(TOKENS_ENV) or None
    tokens = None
    if path is not None:
        try:
            tokens = load_tokens(path)
        except TokensError as exc:
            raise BadInput(str(exc)) from None
    elif not is_loopback(args.host):
        raise BadInput(
            f"serving on {args.host} (beyond this machine) needs tokens: pass --tokens FILE "
            f"(or set ${TOKENS_ENV}) with `TOKEN NAME ROLE` lines; without tokens, serve on 127.0.0.1"
        )
    if args.public_url is not None:
        parts = urlsplit(args.public_url)
        if parts.scheme not in ("http", "https") or not parts.netloc or parts.query:
            raise BadInput(f"--public-url {args.public_url!r} must be an http:// or https:// address without a query")
    role = Role.VIEWER if args.read_only else Role.OPERATOR
    return Prepared(Access(tokens, Identity(args.user or default_user(), role), args.read_only), args.public_url)


async def serve(args: argparse.Namespace, prepared: Prepared) -> int:
    """Serve until SIGTERM or ctrl+c; every dashboard ends with it."""
    from tui.web.server import DashboardServer, configure_logging

    db_url = resolve_db_url(args.db)
    async with await Orchestrator.open(db_url, create=True):
        pass  # created and migrated once here, never raced by the dashboards that start at the same moment
    configure_logging()
    server = DashboardServer(
        host=args.host,
        port=args.port,
        db_url=db_url,
        access=prepared.access,
        public_url=prepared.public_url,
        grace_s=args.grace,
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)

    def listening(port: int) -> None:
        host = f"[{args.host}]" if ":" in args.host else args.host
        who = prepared.access.describe()
        out.print(literal(f"loopdeck serve: http://{host}:{port}/ ({who}; database {display_url(db_url)})"))
        out.print("ctrl+c or SIGTERM stops it (and every dashboard it started)")
        sys.stdout.flush()

    try:
        await server.serve_until_stopped(stop, listening)
    except OSError as exc:
        raise BadInput(f"cannot listen on {args.host}:{args.port}: {exc.strerror or exc}") from None
    return EXIT_OK
