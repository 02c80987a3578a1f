"""The dashboard as an ASGI app (`glucover dashboard` serves this file): the Streamlit app
(dashboard/app.py) plus the two routes that set and clear the session cookie
(dashboard/sessions.py), which a Streamlit script cannot do over its websocket."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import psycopg
import streamlit as st
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from dashboard import sessions
from dashboard.auth import User
from glucover.config import Settings


def _key() -> bytes:
    return sessions.signing_key(Settings.from_env().secret())


def _database_url() -> str:
    return Settings.from_env().require_database_url()


def _resume(token: str, now: datetime) -> User | None:
    with psycopg.connect(_database_url()) as conn:
        return sessions.resume(conn, _key(), token, now)


def _close(token: str) -> None:
    with psycopg.connect(_database_url()) as conn:
        sessions.close_session(conn, _key(), token)


async def open_cookie(request: Request) -> Response:
    """Set the HttpOnly cookie for a session the app has just opened (its signed token, in the
    body), after checking the token and that the session exists."""
    try:
        token = str((await request.json())["token"])
    except (ValueError, KeyError, TypeError):
        return Response(status_code=400)
    now = datetime.now(UTC)
    left = sessions.seconds_left(_key(), token, now)
    if left is None or await run_in_threadpool(_resume, token, now) is None:
        return Response(status_code=403)  # forged or expired; or its session is closed
    response = Response(status_code=204)
    response.set_cookie(sessions.COOKIE, token, max_age=left,
                        path="/", httponly=True, samesite="strict",
                        secure=request.url.scheme == "https")
    return response


async def close_cookie(request: Request) -> Response:
    """Revoke the cookie's session and clear the cookie."""
    token = request.cookies.get(sessions.COOKIE)
    if token:
        await run_in_threadpool(_close, token)
    response = Response(status_code=204)
    response.delete_cookie(sessions.COOKIE, path="/", httponly=True, samesite="strict")
    return response


app = st.App(str(Path(__file__).with_name("app.py")), routes=[
    Route(sessions.OPEN_PATH, open_cookie, methods=["POST"]),
    Route(sessions.CLOSE_PATH, close_cookie, methods=["POST"]),
])
