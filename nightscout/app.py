"""The ASGI app (Starlette): Nightscout's API v1 as the uploaders use it and the v3 subset
AndroidAPS needs. Every route but the status documents needs credentials, and the credentials
alone decide the tenant: no path, query or body names another policy's data.

Database work runs in Starlette's thread pool on a psycopg pool; an upload is answered only
after its transaction commits (docs/nightscout.md)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import queue
import threading
import time
import zlib
from collections.abc import AsyncIterator, Awaitable, Callable
from concurrent.futures import Future
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import psycopg
from psycopg_pool import ConnectionPool
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from devices.wire.decoding import RejectReason
from ingest.store import prepare
from nightscout import credentials, store
from nightscout.mapping import (
    ENTRY_SEQ,
    EPOCH,
    NotEntries,
    decode_entries,
    identifier,
    v1_document,
    v3_document,
)
from nightscout.store import EntriesResult, Tenant, Upload

log = logging.getLogger("glucover.nightscout")

SERVER_NAME = "glucover"
# Apps read the version to decide what the server speaks: xDrip+ treats anything but 0.6-0.8
# as current, AndroidAPS wants API v3 (Nightscout 15). docs/nightscout.md.
NIGHTSCOUT_VERSION = "15.0.2"
MAX_BODY_BYTES = 64 * 1024 * 1024  # after gunzip: 10,000 xDrip+ entries are about 3 MB
DEFAULT_COUNT = 10  # GET entries without count, as Nightscout
MAX_COUNT = 100_000
V3_DEFAULT_LIMIT, V3_MAX_LIMIT = 1000, 10_000
TENANT_CACHE_S = 5.0  # a rotated secret stops working within this
POOL_MAX = 8
# Transactions writing uploads at once: PostgreSQL flushes concurrent commits' WAL together,
# so a few writers keep the disk busy; uploads that arrive while all of them are busy wait and
# go together (group commit), up to GROUP_MAX_ENTRIES entries a transaction.
WRITERS = 4
GROUP_MAX_ENTRIES = 20_000


class HttpError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def _json(doc: Any, status: int = 200) -> Response:
    return Response(orjson.dumps(doc), status_code=status, media_type="application/json")


def _ms(ts: datetime) -> int:
    return round(ts.timestamp() * 1000)


class GroupWriter:
    """Uploads that arrive while every writer is busy wait, and the next free writer writes
    them together in one transaction (group commit): one commit, not one each, for many apps'
    requests, each answered once it has committed. A group holding an entry stored before is
    rolled back and written upload by upload (ingest's slow path counts only the whole batch's
    duplicates)."""

    def __init__(self, pool: ConnectionPool[psycopg.Connection[Any]], writers: int) -> None:
        self.pool = pool
        self.queue: queue.SimpleQueue[tuple[Upload, Future[EntriesResult]] | None] = \
            queue.SimpleQueue()
        self.threads = [threading.Thread(target=self._run, name=f"nightscout-writer-{i}",
                                         daemon=True) for i in range(writers)]

    def start(self) -> None:
        for thread in self.threads:
            thread.start()

    def stop(self) -> None:
        for _ in self.threads:
            self.queue.put(None)
        for thread in self.threads:
            thread.join(60)

    def submit(self, upload: Upload) -> Future[EntriesResult]:
        done: Future[EntriesResult] = Future()
        self.queue.put((upload, done))
        return done

    def _run(self) -> None:
        while (first := self.queue.get()) is not None:
            group = [first]
            entries = len(first[0].entries)
            while entries < GROUP_MAX_ENTRIES:
                try:
                    more = self.queue.get_nowait()
                except queue.Empty:
                    break
                if more is None:
                    self.queue.put(None)
                    break
                group.append(more)
                entries += len(more[0].entries)
            self._write(group)

    def _write(self, group: list[tuple[Upload, Future[EntriesResult]]]) -> None:
        uploads = [u for u, _ in group]
        try:
            with self.pool.connection() as conn:
                results = store.store_uploads(conn, uploads, merge=len(uploads) == 1)
                if results is None:
                    conn.rollback()
        except Exception as exc:  # noqa: BLE001 - handed to the waiting requests
            if len(group) == 1:
                group[0][1].set_exception(exc)
                return
            results = None
        if results is None:  # one by one, each failing alone
            for one in group:
                self._write([one])
            return
        for (_, done), result in zip(group, results, strict=True):
            done.set_result(result)


@dataclass
class Api:
    pool: ConnectionPool[psycopg.Connection[Any]]
    secret: str
    cache_s: float = TENANT_CACHE_S

    def __post_init__(self) -> None:
        self.cache: dict[str, tuple[float, Tenant | None]] = {}
        self.writer = GroupWriter(self.pool, WRITERS)

    # ------------------------------------------------------------ credentials -> tenant

    async def _cached(self, key: str,
                      find: Callable[[psycopg.Connection[Any]], Tenant | None]
                      ) -> Tenant | None:
        now = time.monotonic()
        hit = self.cache.get(key)
        if hit is not None and now - hit[0] < self.cache_s:
            return hit[1]
        found: Tenant | None = await run_in_threadpool(self._read, find)
        if len(self.cache) > 100_000:
            self.cache.clear()
        self.cache[key] = (now, found)
        return found

    async def tenant(self, request: Request) -> Tenant:
        """The tenant the request's credentials name; 401 when they name none."""
        auth = request.headers.get("authorization", "")
        if auth.lower().startswith("bearer "):
            return await self._jwt_tenant(auth[7:].strip())
        sent = request.headers.get("api-secret")
        if sent:
            value = sent.strip().lower()
            found = await self._cached("s:" + value, lambda c: store.tenant_by_secret(c, value))
        elif token := request.query_params.get("token"):
            if token.count(".") == 2:
                return await self._jwt_tenant(token)
            found = await self._cached("t:" + token, lambda c: store.tenant_by_token(c, token))
        else:
            raise HttpError(401, "Unauthorized: send the api-secret header or ?token=")
        if found is None:
            raise HttpError(401, "Unauthorized: unknown api-secret or token")
        return found

    async def _jwt_tenant(self, jwt: str) -> Tenant:
        claims = credentials.verify_jwt(self.secret, jwt, int(time.time()))
        if claims is None:
            raise HttpError(401, "Unauthorized: bad or expired JWT")
        policy_id, generation = claims
        found = await self._cached(f"j:{policy_id}:{generation}",
                             lambda c: store.tenant_by_policy(c, policy_id, generation))
        if found is None:
            raise HttpError(401, "Unauthorized: the credentials of this JWT were rotated")
        return found

    # ------------------------------------------------------------ bodies

    async def body(self, request: Request, tenant: Tenant, topic: str) -> bytes:
        """The request's body, gzip inflated (at most MAX_BODY_BYTES)."""
        declared = request.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > MAX_BODY_BYTES:
            raise HttpError(413, f"more than {MAX_BODY_BYTES} bytes")
        body = await request.body()
        if request.headers.get("content-encoding", "").lower() == "gzip":
            try:
                inflater = zlib.decompressobj(wbits=31)
                body = inflater.decompress(body, MAX_BODY_BYTES)
                if inflater.unconsumed_tail:
                    raise HttpError(413, f"more than {MAX_BODY_BYTES} bytes inflated")
            except zlib.error as exc:
                await self._unreadable(tenant, body, RejectReason.INVALID_JSON,
                                       f"bad gzip: {exc}", datetime.now(UTC), topic)
                raise HttpError(400, f"bad gzip body: {exc}") from None
        if len(body) > MAX_BODY_BYTES:
            raise HttpError(413, f"more than {MAX_BODY_BYTES} bytes")
        return body

    async def entries(self, request: Request, tenant: Tenant, topic: str
                      ) -> tuple[list[Any], bytes]:
        """The uploaded entries (mapping.decode_entries) and the body; a body that holds none
        is recorded and answered 400."""
        body = await self.body(request, tenant, topic)
        try:
            return decode_entries(body), body
        except NotEntries as exc:
            await self._unreadable(tenant, body, exc.reason, str(exc), datetime.now(UTC), topic)
            raise HttpError(400, str(exc)) from None

    async def documents(self, request: Request, tenant: Tenant, topic: str) -> list[Any]:
        """The request's JSON body as a list of documents (an object is a list of one). A
        body that is none is recorded and answered 400."""
        body = await self.body(request, tenant, topic)
        try:
            doc = orjson.loads(body)
        except orjson.JSONDecodeError as exc:
            await self._unreadable(tenant, body, RejectReason.INVALID_JSON, str(exc),
                                   datetime.now(UTC), topic)
            raise HttpError(400, f"invalid JSON: {exc}") from None
        if isinstance(doc, dict):
            return [doc]
        if not isinstance(doc, list):
            await self._unreadable(tenant, body, RejectReason.INVALID_ENVELOPE,
                                   "must be a JSON array of documents", datetime.now(UTC),
                                   topic)
            raise HttpError(400, "the body must be a JSON array of documents (or one object)")
        return doc

    async def _unreadable(self, tenant: Tenant, body: bytes, reason: str, detail: str,
                          received_at: datetime, topic: str) -> None:
        def write() -> None:
            with self.pool.connection() as conn:
                store.record_unreadable(conn, tenant, body, reason, detail, received_at, topic)
        await run_in_threadpool(write)

    def _write(self, work: Callable[[psycopg.Connection[Any]], Any]) -> Any:
        """One transaction, committed before the answer (the pool's context commits)."""
        with self.pool.connection() as conn:
            return work(conn)

    def _read(self, work: Callable[[psycopg.Connection[Any]], Any]) -> Any:
        with self.pool.connection() as conn:
            return work(conn)

    # ------------------------------------------------------------ v1

    async def post_entries(self, request: Request) -> Response:
        tenant = await self.tenant(request)
        docs, body = await self.entries(request, tenant, store.ENTRIES_TOPIC)
        result = await asyncio.wrap_future(self.writer.submit(Upload(
            tenant, docs, datetime.now(UTC), store.ENTRIES_TOPIC, body)))
        return _json({"status": "ok", **result.answer()})

    async def get_entries(self, request: Request) -> Response:
        tenant = await self.tenant(request)
        kind = request.path_params.get("kind")
        count = _int_param(request, "count", DEFAULT_COUNT, 1, MAX_COUNT)
        if kind == "current":  # the newest entry, as followers ask for it
            kind, count = None, 1
        elif kind is None:
            query_type = request.query_params.get("find[type]")
            kind = query_type if query_type in ENTRY_SEQ else None
        elif kind not in ENTRY_SEQ:
            raise HttpError(404, f"no entries of type {kind[:20]!r} here: sgv, mbg or current")
        since = _time_param(request, ("find[date][$gte]", "find[date][$gt]"))
        until = _time_param(request, ("find[date][$lte]", "find[date][$lt]"))
        if request.query_params.get("find[date][$gt]") and since is not None:
            since += timedelta(milliseconds=1)
        if request.query_params.get("find[date][$lt]") and until is not None:
            until -= timedelta(milliseconds=1)
        rows = await run_in_threadpool(self._read, lambda c: store.read_entries(
            c, tenant, count, since, until, kind))
        return _json([v1_document(e) for e in rows])

    async def status(self, request: Request) -> Response:
        now = datetime.now(UTC)
        return _json({
            "status": "ok", "name": SERVER_NAME, "version": NIGHTSCOUT_VERSION,
            "serverTime": now.isoformat(timespec="milliseconds"), "serverTimeEpoch": _ms(now),
            "apiEnabled": True, "careportalEnabled": True, "boluscalcEnabled": False,
            "settings": {"units": "mg/dl", "enable": ["careportal", "api"]},
            "extendedSettings": {}, "authorized": None,
        })

    async def post_treatments(self, request: Request) -> Response:
        tenant = await self.tenant(request)
        docs = await self.documents(request, tenant, "nightscout/treatments")
        replace = request.method == "PUT"
        result = await run_in_threadpool(self._write, lambda c: store.store_treatments(
            c, tenant, docs, replace))
        if result.rejected and not result.stored:
            return _json({"status": 400, "message": "no treatment stored",
                          "rejected": result.rejected}, 400)
        return _json(result.stored)

    async def post_devicestatus(self, request: Request) -> Response:
        tenant = await self.tenant(request)
        docs = await self.documents(request, tenant, "nightscout/devicestatus")
        received_at = datetime.now(UTC)
        result = await run_in_threadpool(self._write, lambda c: store.store_devicestatus(
            c, tenant, docs, received_at))
        return _json(result.stored)

    # ------------------------------------------------------------ v2 / v3

    async def authorization_request(self, request: Request) -> Response:
        token = request.path_params["token"]
        found = await self._cached("t:" + token, lambda c: store.tenant_by_token(c, token))
        if found is None:
            raise HttpError(401, "Unauthorized: unknown access token")
        jwt, iat, exp = credentials.issue_jwt(self.secret, found.policy_id, found.generation,
                                              int(time.time()))
        return _json({"token": jwt, "sub": found.policy_id, "iat": iat, "exp": exp})

    async def v3_status(self, request: Request) -> Response:
        await self.tenant(request)
        now = datetime.now(UTC)
        return _json({"status": 200, "result": {
            "version": NIGHTSCOUT_VERSION, "apiVersion": "3.0.4", "srvDate": _ms(now),
            "storage": {"storage": "postgresql"},
            "apiPermissions": {"entries": "crud", "treatments": "crud", "devicestatus": "crud"}}})

    async def v3_post_entry(self, request: Request) -> Response:
        tenant = await self.tenant(request)
        docs, body = await self.entries(request, tenant, "nightscout/v3/entries")
        if len(docs) != 1:
            raise HttpError(400, "API v3 creates one document per request")
        result = await asyncio.wrap_future(self.writer.submit(Upload(
            tenant, docs, datetime.now(UTC), "nightscout/v3/entries", body)))
        if result.rejected or (not result.accepted and not result.sensor_errors):
            message = result.rejected[0]["detail"] if result.rejected else \
                "not a glucose entry (sgv or mbg)"
            return _json({"status": 400, "message": message, "rejected": result.rejected}, 400)
        if not result.accepted:  # a sensor error code: kept as device trouble
            return _json({"status": 201, "identifier": None, "sensor_errors": 1}, 201)
        reading = result.accepted[0].reading
        ident = identifier(reading.device_id, reading.seq, reading.measured_at)
        modified = await run_in_threadpool(self._read, lambda c: store.last_modified(c, tenant))
        if result.stored:
            return _json({"status": 201, "identifier": ident,
                          "lastModified": modified["entries"]}, 201)
        return _json({"status": 200, "identifier": ident, "isDeduplication": True,
                      "deduplicatedIdentifier": ident, "lastModified": modified["entries"]})

    async def v3_last_modified(self, request: Request) -> Response:
        tenant = await self.tenant(request)
        modified = await run_in_threadpool(self._read, lambda c: store.last_modified(c, tenant))
        return _json({"status": 200, "result": {"srvDate": _ms(datetime.now(UTC)),
                                                "collections": modified}})

    async def v3_entries_history(self, request: Request) -> Response:
        tenant = await self.tenant(request)
        try:
            since = int(request.path_params["since"])
        except ValueError:
            raise HttpError(400, "history/{since}: since is ms since 1970") from None
        limit = _int_param(request, "limit", V3_DEFAULT_LIMIT, 1, V3_MAX_LIMIT)
        rows = await run_in_threadpool(self._read, lambda c: store.entries_modified_since(
            c, tenant, since, limit))
        docs = [v3_document(e) for e in rows]
        response = _json({"status": 200, "result": docs})
        if docs:
            response.headers["Last-Modified"] = (EPOCH + timedelta(
                milliseconds=docs[-1]["srvModified"])).strftime("%a, %d %b %Y %H:%M:%S GMT")
        return response


def _int_param(request: Request, name: str, default: int, low: int, high: int) -> int:
    text = request.query_params.get(name)
    if text is None:
        return default
    try:
        value = int(text)
    except ValueError:
        raise HttpError(400, f"{name} must be a whole number") from None
    return max(low, min(high, value))


def _time_param(request: Request, names: tuple[str, ...]) -> datetime | None:
    """find[date][$gte]-style bounds: ms since 1970 (as the apps send), or ISO 8601."""
    for name in names:
        text = request.query_params.get(name)
        if text is None:
            continue
        try:
            return EPOCH + timedelta(milliseconds=float(text))
        except (ValueError, OverflowError):
            pass
        try:
            ts = datetime.fromisoformat(text.replace("Z", "+00:00"))
        except ValueError:
            raise HttpError(400, f"{name}: ms since 1970 or ISO 8601") from None
        return ts if ts.tzinfo else ts.replace(tzinfo=UTC)
    return None


Endpoint = Callable[[Request], Awaitable[Response]]


def _guarded(endpoint: Endpoint) -> Endpoint:
    async def run(request: Request) -> Response:
        try:
            return await endpoint(request)
        except HttpError as exc:
            return _json({"status": exc.status, "message": exc.message}, exc.status)
    return run


def create_app(database_url: str, secret: str, cache_s: float = TENANT_CACHE_S,
               pool_max: int = POOL_MAX) -> Starlette:
    pool: ConnectionPool[psycopg.Connection[Any]] = ConnectionPool(
        database_url, min_size=1, max_size=pool_max, open=False, configure=prepare,
        kwargs={"prepare_threshold": None, "connect_timeout": 10})
    api = Api(pool, secret, cache_s)
    g = _guarded
    routes = [
        Route("/api/v1/entries", g(api.post_entries), methods=["POST"]),
        Route("/api/v1/entries.json", g(api.post_entries), methods=["POST"]),
        Route("/api/v1/entries", g(api.get_entries), methods=["GET"]),
        Route("/api/v1/entries.json", g(api.get_entries), methods=["GET"]),
        Route("/api/v1/entries/{kind:str}.json", g(api.get_entries), methods=["GET"]),
        Route("/api/v1/entries/{kind:str}", g(api.get_entries), methods=["GET"]),
        Route("/api/v1/status.json", g(api.status), methods=["GET"]),
        Route("/api/v1/status", g(api.status), methods=["GET"]),
        Route("/api/v1/treatments", g(api.post_treatments), methods=["POST", "PUT"]),
        Route("/api/v1/treatments.json", g(api.post_treatments), methods=["POST", "PUT"]),
        Route("/api/v1/devicestatus", g(api.post_devicestatus), methods=["POST"]),
        Route("/api/v1/devicestatus.json", g(api.post_devicestatus), methods=["POST"]),
        Route("/api/v2/authorization/request/{token:str}", g(api.authorization_request),
              methods=["GET"]),
        Route("/api/v3/status", g(api.v3_status), methods=["GET"]),
        Route("/api/v3/entries", g(api.v3_post_entry), methods=["POST"]),
        Route("/api/v3/lastModified", g(api.v3_last_modified), methods=["GET"]),
        Route("/api/v3/entries/history/{since:str}", g(api.v3_entries_history),
              methods=["GET"]),
    ]

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await run_in_threadpool(pool.open, True, 30.0)
        api.writer.start()
        try:
            yield
        finally:
            await run_in_threadpool(api.writer.stop)
            await run_in_threadpool(pool.close)

    return Starlette(routes=routes, lifespan=lifespan)
