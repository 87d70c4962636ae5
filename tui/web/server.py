"""``loopdeck serve``: the dashboard in a browser, one dashboard process per browser connection.

Built on textual-serve (its page, its websocket protocol, its terminal in the
browser); what is ours is what a shared server needs on top:

* each connection's dashboard is started from an argv list (textual-serve
  runs a shell string), as the connection's own user, read-only for viewers,
  with the database URL in its environment rather than on a command line;
* a tab that closes ends its dashboard (asked to quit, killed after a grace
  period), and every dashboard still open is killed when ``serve`` stops;
* a dashboard that dies says so in the page instead of leaving it blank;
* the access log names the user and never prints a query string (tokens).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp_jinja2
import jinja2
from aiohttp import WSCloseCode, web
from aiohttp.abc import AbstractAccessLogger
from textual_serve.app_service import AppService
from textual_serve.server import Server, to_int

from tui.web.access import IDENTITY_KEY, Access
from tui.web.tokens import Identity

TEMPLATES = Path(__file__).parent / "templates"
TOKENS_ENV = "LOOPDECK_SERVE_TOKENS"
STOP_GRACE_S = 5.0  # a dashboard asked to quit is killed after this (serve --grace)
RUN_ID = re.compile(r"^[0-9A-Za-z][0-9A-Za-z_-]{0,63}$")
CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
log = logging.getLogger("loopdeck.serve")


def dashboard_argv(identity: Identity, run_id: str | None) -> list[str]:
    """The command line of one browser connection's dashboard (no shell ever sees it)."""
    argv = [sys.executable, "-m", "tui.cli", "--user", identity.name]
    if run_id is not None:
        argv += ["attach", run_id]
    if identity.read_only:
        argv.append("--read-only")
    return argv


def ended_message(returncode: int | None, error: str) -> bytes:
    """What the page shows when its dashboard process died: a reset terminal, what happened, its last error line."""
    how = f"exit status {returncode}" if returncode is not None and returncode >= 0 else f"signal {-(returncode or 0)}"
    lines = [f"loopdeck: this dashboard's process ended unexpectedly ({how})."]
    if error:
        lines.append(f"Its last words: {error}")
    lines.append("Runs are not affected. Reload the page to open a new dashboard.")
    return b"\x1bc" + "\r\n".join(lines).encode() + b"\r\n"  # RIS: leave the dashboard's screen and modes


def last_line(data: bytes) -> str:
    """The last non-empty line of a dashboard's error output, as plain text (never a terminal escape)."""
    text = re.sub(r"\x1b\[[0-9;?]*[ -/]*[@-~]", "", data.decode("utf-8", "replace"))
    for line in reversed(text.splitlines()):
        line = CONTROL.sub("", line).strip()
        if line:
            return line[:300]
    return ""


class _Tail:
    """A stream reader that keeps the last 4 kB it read (textual-serve reads the child's stderr; we keep its end)."""

    def __init__(self, reader: asyncio.StreamReader) -> None:
        self.reader = reader
        self.kept = bytearray()

    async def read(self, n: int = -1) -> bytes:
        data = await self.reader.read(n)
        self.kept += data
        del self.kept[:-4096]
        return data


class DashboardSession(AppService):
    """One browser connection's dashboard process."""

    def __init__(self, argv: list[str], env: dict[str, str], grace_s: float = STOP_GRACE_S, **kwargs: Any) -> None:
        super().__init__(" ".join(argv), **kwargs)
        self.grace_s = grace_s
        self.argv = argv
        self.extra_env = env
        self._stopping = False
        self._ended_cleanly = False
        self._stderr: _Tail | None = None

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    async def _open_app_process(self, width: int = 80, height: int = 24) -> asyncio.subprocess.Process:
        environment = self._build_environment(width=width, height=height)
        environment.pop(TOKENS_ENV, None)  # a dashboard never needs the tokens
        environment.update(self.extra_env)
        self._process = process = await asyncio.create_subprocess_exec(
            *self.argv,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env=environment,
            start_new_session=True,  # ctrl+c on serve's terminal is serve's to handle, not each dashboard's
        )
        assert process.stdin is not None and process.stderr is not None
        self._stdin = process.stdin
        self._stderr = _Tail(process.stderr)
        process.stderr = self._stderr  # type: ignore[assignment]
        return process

    async def on_meta(self, data: bytes) -> None:
        if json.loads(data).get("type") == "exit":
            self._ended_cleanly = True
        await super().on_meta(data)

    async def run(self) -> None:
        await super().run()
        assert self._process is not None
        returncode = await self._process.wait()
        if not (self._ended_cleanly or self._stopping):
            log.warning("dashboard process %s ended unexpectedly (status %s)", self._process.pid, returncode)
            with contextlib.suppress(Exception):  # the browser went away too
                error = last_line(bytes(self._stderr.kept)) if self._stderr is not None else ""
                await self.remote_write_bytes(ended_message(returncode, error))

    async def stop(self) -> None:
        """Ask the dashboard to quit; kill it if it has not within the grace period.

        Not ``wait_for(super().stop())``: textual-serve's reader swallows the
        cancellation a timeout sends, so a dashboard that ignored the quit kept
        that wait (and its process) alive until ``serve`` stopped.
        """
        self._stopping = True
        task, self._task = self._task, None
        try:
            if task is not None:
                await self._download_manager.cancel_app_downloads(app_service_id=self.app_service_id)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.send_meta({"type": "quit"}), self.grace_s)
                done, _ = await asyncio.wait({task}, timeout=self.grace_s)
                if not done:
                    log.warning("dashboard process %s did not quit in %gs: killed", self.pid, self.grace_s)
        finally:
            await self.kill()
            if task is not None:
                await asyncio.wait({task}, timeout=self.grace_s)  # its output ends with the process

    async def kill(self) -> None:
        process = self._process
        if process is not None and process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                process.kill()
            await process.wait()


class DashboardServer(Server):
    """textual-serve's server with loopdeck's access rule, sessions and routes."""

    def __init__(
        self,
        *,
        host: str,
        port: int,
        db_url: str,
        access: Access,
        public_url: str | None = None,
        grace_s: float = STOP_GRACE_S,
    ) -> None:
        super().__init__("loopdeck", host=host, port=port, title="loopdeck", templates_path=TEMPLATES)
        self.given_public_url = public_url.rstrip("/") if public_url else None
        self.db_url = db_url
        self.access = access
        self.sessions: dict[DashboardSession, web.WebSocketResponse] = {}
        self.grace_s = grace_s

    async def _make_app(self) -> web.Application:
        app = web.Application(middlewares=[self.access.middleware])
        aiohttp_jinja2.setup(app, loader=jinja2.FileSystemLoader(self.templates_path), autoescape=True)
        app.add_routes(
            [
                web.get("/", self.handle_index, name="index"),
                web.get("/runs/{run_id}", self.handle_index, name="run"),
                web.get("/ws", self.handle_websocket, name="websocket"),
                web.get("/runs/{run_id}/ws", self.handle_websocket, name="run_websocket"),
                web.get("/download/{key}", self.handle_download, name="download"),
                web.static("/static", self.statics_path, name="static"),
            ]
        )
        app.on_shutdown.append(self.on_shutdown)
        return app

    async def on_shutdown(self, app: web.Application) -> None:
        """Close every page's connection: its handler then asks its dashboard to quit (no orphans)."""
        await asyncio.gather(
            *(
                ws.close(code=WSCloseCode.GOING_AWAY, message=b"loopdeck serve stopped")
                for ws in self.sessions.values()
            ),
            return_exceptions=True,
        )

    def _base_url(self, request: web.Request) -> str:
        if self.given_public_url:
            return self.given_public_url
        scheme = "https" if request.secure or request.headers.get("X-Forwarded-Proto") == "https" else "http"
        return f"{scheme}://{request.host}"

    async def handle_index(self, request: web.Request) -> web.StreamResponse:  # type: ignore[override]
        run_id = _run_id(request)
        base = self._base_url(request)
        ws_path = f"/runs/{run_id}/ws" if run_id else "/ws"
        ws_url = ("wss" if base.startswith("https") else "ws") + ":" + base.split(":", 1)[1] + ws_path
        context = {
            "font_size": to_int(request.query.get("fontsize", "16"), 16),
            "app_websocket_url": ws_url,
            "static_url": f"{base}/static/",
            "title": f"loopdeck · {run_id}" if run_id else "loopdeck",
        }
        response = aiohttp_jinja2.render_template("index.html", request, context)
        response.headers["Cache-Control"] = "no-store"
        response.headers["Referrer-Policy"] = "no-referrer"
        return response

    async def handle_websocket(self, request: web.Request) -> web.WebSocketResponse:
        identity = request[IDENTITY_KEY]
        websocket = web.WebSocketResponse(heartbeat=15)
        width = to_int(request.query.get("width", "80"), 80)
        height = to_int(request.query.get("height", "24"), 24)
        await websocket.prepare(request)
        session = DashboardSession(
            dashboard_argv(identity, _run_id(request)),
            {"LOOPDECK_DB": self.db_url},
            self.grace_s,
            write_bytes=websocket.send_bytes,
            write_str=websocket.send_str,
            close=websocket.close,
            download_manager=self.download_manager,
        )
        self.sessions[session] = websocket
        log.info("dashboard for %s (%s) opened", identity.name, identity.role.value)
        try:
            await session.start(width, height)
            await self._process_messages(websocket, session)
        except asyncio.CancelledError:
            await websocket.close()
        except Exception:
            log.exception("dashboard for %s failed", identity.name)
        finally:
            await session.stop()
            self.sessions.pop(session, None)
            log.info("dashboard for %s closed", identity.name)
        return websocket

    async def serve_until_stopped(self, stop: asyncio.Event, listening: Callable[[int], None]) -> None:
        """Listen until ``stop`` is set (``listening`` hears the port), then close every connection and dashboard."""
        runner = web.AppRunner(await self._make_app(), access_log_class=AccessLog, shutdown_timeout=self.grace_s)
        await runner.setup()
        try:
            site = web.TCPSite(runner, self.host, self.port)
            await site.start()
            self.port = _bound_port(site)
            listening(self.port)
            await stop.wait()
        finally:
            await runner.cleanup()
            # the last resort, for a dashboard whose handler did not finish in the shutdown timeout
            await asyncio.gather(*(session.kill() for session in list(self.sessions)), return_exceptions=True)


def _run_id(request: web.Request) -> str | None:
    run_id = request.match_info.get("run_id")
    if run_id is not None and not RUN_ID.match(run_id):
        raise web.HTTPNotFound(text="loopdeck: no such run id\n")
    return run_id


def _bound_port(site: web.TCPSite) -> int:
    server = site._server  # the port the system chose for --port 0
    sockets = getattr(server, "sockets", None) or []
    return int(sockets[0].getsockname()[1]) if sockets else site._port


class AccessLog(AbstractAccessLogger):
    """One line per request: method, path (never the query: it may hold a token), status, user."""

    def log(self, request: web.BaseRequest, response: web.StreamResponse, time: float) -> None:
        name = _identity_name(request)
        self.logger.info("%s %s %s %s %.0fms", request.method, request.path, response.status, name, time * 1000)


def _identity_name(request: web.BaseRequest) -> str:
    try:
        return str(request[IDENTITY_KEY].name)  # type: ignore[index]
    except KeyError:
        return "-"


def configure_logging() -> None:
    """Plain lines on stderr for serve's own log (no colours: it is read in journals and files)."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(name)s %(levelname)s %(message)s"))
    for name in ("loopdeck.serve", "aiohttp.access", "textual-serve"):
        logger = logging.getLogger(name)
        logger.handlers[:] = [handler]
        logger.setLevel(logging.INFO)
        logger.propagate = False
