"""The dashboard as an ASGI app (`glucover dashboard` serves this file): the Streamlit app
(dashboard/app.py) plus the two routes that set and clear the session cookie
(dashboard/sessions.py), which a Streamlit script cannot do over its websocket."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import psycopg
import streamlit as st
from starlette.concurrency import run_in_threadpool
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from dashboard import sessions
from glucover.config import Settings


def _key() -> bytes:
    return sessions.signing_key(Settings.from_env().key("session_key"))


def _database_url() -> str:
    return Settings.from_env().require_database_url()


def _close(token: str) -> None:
    with psycopg.connect(_database_url()) as conn:
        sessions.close_session(conn, _key(), token)


def same_origin(request: Request) -> bool:
    """A request the dashboard's own page made: its Origin names this server (browsers send
    Origin with every POST; a page on another site cannot forge it), and the browser does not
    say it came from another site."""
    origin = request.headers.get("origin")
    host = request.headers.get("host")
    if not origin or not host or origin not in (f"http://{host}", f"https://{host}"):
        return False
    return request.headers.get("sec-fetch-site", "same-origin") == "same-origin"


def _json_only(request: Request) -> bool:
    """Only JSON: a cross-site form or text/plain body cannot carry it without a preflight."""
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    return kind == "application/json"


def _issue(session_id: str) -> tuple[str, int] | None:
    with psycopg.connect(_database_url()) as conn:
        return sessions.issue_cookie(conn, _key(), session_id)


async def open_cookie(request: Request) -> Response:
    """Set the HttpOnly cookie of a session the app has just opened, in exchange for its grant
    (JSON body) and with its CSRF token (header), from the dashboard's own page only. A grant
    is spent once; the token itself never went through the page."""
    if not same_origin(request) or not _json_only(request):
        return Response(status_code=403)
    try:
        grant = (await request.json())["grant"]
    except (ValueError, KeyError, TypeError):
        return Response(status_code=400)
    session_id = sessions.granted(_key(), grant if isinstance(grant, str) else None,
                                  datetime.now(UTC))
    if session_id is None:
        return Response(status_code=403)
    if not sessions.csrf_ok(_key(), session_id, request.headers.get(sessions.CSRF_HEADER)):
        return Response(status_code=403)
    issued = await run_in_threadpool(_issue, session_id)
    if issued is None:
        return Response(status_code=403)  # spent, or its session is closed
    token, left = issued
    response = Response(status_code=204)
    response.set_cookie(sessions.COOKIE, token, max_age=left,
                        path="/", httponly=True, samesite="strict",
                        secure=request.url.scheme == "https")
    return response


async def close_cookie(request: Request) -> Response:
    """Revoke the cookie's session and clear the cookie: asked by the dashboard's own page,
    with the session's CSRF token."""
    token = request.cookies.get(sessions.COOKIE)
    if not same_origin(request):
        return Response(status_code=403)
    if token:
        session_id = sessions.verify(_key(), token, datetime.now(UTC))
        if session_id is not None and not sessions.csrf_ok(
                _key(), session_id, request.headers.get(sessions.CSRF_HEADER)):
            return Response(status_code=403)
        await run_in_threadpool(_close, token)
    response = Response(status_code=204)
    response.delete_cookie(sessions.COOKIE, path="/", httponly=True, samesite="strict")
    return response


# Pages of the dashboard may be framed only by the dashboard itself (Streamlit's components):
# no other site can show them under its own and trick a click.
FRAME_HEADERS = ((b"x-frame-options", b"SAMEORIGIN"),
                 (b"content-security-policy", b"frame-ancestors 'self'"),
                 (b"x-content-type-options", b"nosniff"),
                 (b"referrer-policy", b"same-origin"))


class FrameGuard:
    """ASGI middleware adding FRAME_HEADERS to every HTTP response."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                names = {k.lower() for k, _ in message.get("headers", [])}
                message["headers"] = [*message.get("headers", []),
                                      *(h for h in FRAME_HEADERS if h[0] not in names)]
            await send(message)

        await self.app(scope, receive, send_with_headers)


app = st.App(str(Path(__file__).with_name("app.py")), routes=[
    Route(sessions.OPEN_PATH, open_cookie, methods=["POST"]),
    Route(sessions.CLOSE_PATH, close_cookie, methods=["POST"]),
], middleware=[Middleware(FrameGuard)])
