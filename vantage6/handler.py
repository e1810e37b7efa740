"""Django over ASGI with each request handled in one pooled worker thread, as under WSGI.

Django's own ``ASGIHandler`` runs the middleware chain in the event loop and hands every sync piece
(the request-started signal, sync-only middleware, the view, closing the response) to a thread of a
per-request thread pool: several thread hops and a new thread on every request, so that persistent
database connections are never reused either. The views of this project are all synchronous, so
this handler reads the body in the event loop, then runs the whole request - signals, the sync
middleware chain, the view - in one call to a long-lived thread pool, and sends the response from
the loop. Code in a view that needs the event loop (``async_to_sync``) still reaches it.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import io
import os
import queue
import threading
from collections import deque
from collections.abc import Callable, Hashable
from typing import Any, cast

from asgiref.sync import SyncToAsync
from django.conf import settings
from django.contrib.staticfiles.handlers import ASGIStaticFilesHandler
from django.core import signals
from django.core.exceptions import RequestAborted, SuspiciousFileOperation
from django.core.handlers import base
from django.core.handlers.asgi import ASGIHandler, get_script_prefix
from django.http import FileResponse, HttpRequest, HttpResponse, HttpResponseBase
from django.middleware.clickjacking import XFrameOptionsMiddleware
from django.middleware.security import SecurityMiddleware
from django.urls import ResolverMatch, get_resolver, set_script_prefix

from vantage6.api.errors import json_400
from vantage6.api.routes import RouteIndex
from vantage6.socketio import bridge

# Upper bound of requests served at once by one process; threads are started on demand only, so a
# process under light load keeps a few. Slow calls (bcrypt, algorithm stores, e-mail) hold a thread.
MAX_THREADS = 32
# The fewest request threads one identity may hold while threads are free (``Shares``).
FAIR_SHARE_FLOOR = 8
# Request threads only an identity holding none may take (``Shares``): however many identities flood, a
# newcomer's request is served at once.
NEWCOMER_THREADS = 4
# What a request's thread left for its loop to do once the answer is written (``bridge.after_answer``).
Later = list[Callable[[], object]]
# Who a request comes from, read from its scope in the loop (``Shares``); None: anonymous.
Identify = Callable[[dict], Hashable]
# The client a request without a token comes from (its address), read from its scope (``Shares``).
ClientOf = Callable[[dict], Hashable]


def _anonymous(_scope: dict) -> None:
    return None


class PooledASGIHandler(ASGIHandler):
    """``identify``: the identity a request counts for in ``Shares`` (the project's: its token's);
    ``client_of``: for a request without one, the client whose turn it waits for (its address)."""

    def __init__(
        self,
        max_threads: int = MAX_THREADS,
        identify: Identify = _anonymous,
        client_of: ClientOf = _anonymous,
    ) -> None:
        base.BaseHandler.__init__(self)
        self.load_middleware(is_async=False)
        self.executor = RequestThreads(max_threads)
        self.shares = Shares(
            min(settings.REQUEST_THREADS_PER_IDENTITY, max_threads),
            max_threads,
            per_client=settings.REQUEST_THREADS_PER_ADDRESS,
        )
        self.identify = identify
        self.client_of = client_of
        self._routes: RouteIndex | None = None

    async def _in_thread(
        self, identity: Hashable, client: Hashable, later: Later, func: Callable[..., Any], *args: Any
    ) -> Any:
        """``func(*args)`` in a worker thread of the pool, from where ``async_to_sync`` reaches this loop,
        once ``identity`` (whose request it is for, from ``client``) has a thread of its share free; what it
        leaves for after the answer (its events: ``bridge.after_answer``) goes to ``later``.

        What asgiref's ``SyncToAsync`` does for that, without its copies of the loop's context into the
        thread and back on every call: the requests' code keeps nothing in context variables of the
        loop, so a worker thread keeps its own, as under WSGI.
        """
        await self.shares.take(identity, client)
        try:
            loop = asyncio.get_running_loop()
            answer = loop.create_future()
            self.executor.submit(answer, _call_from, loop, later, func, args)
            return await answer
        finally:
            self.shares.give_back(identity, client)

    async def read_body(self, receive) -> Any:
        """The body as a file: in memory when it comes in one message within Django's in-memory limit
        (what a client's small request sends), else Django's spooled temporary file."""
        message = await receive()
        body = message.get("body", b"")
        if (
            message["type"] == "http.request"
            and not message.get("more_body", False)
            and len(body) <= settings.FILE_UPLOAD_MAX_MEMORY_SIZE
        ):
            return io.BytesIO(body)
        return await super().read_body(_replay(message, receive))

    async def __call__(self, scope: dict, receive, send) -> None:
        if scope["type"] != "http":
            raise ValueError(f"Django can only handle ASGI/HTTP connections, not {scope['type']}.")
        try:
            body_file = await self.read_body(receive)
        except RequestAborted:
            return
        scope = _with_body_length(scope, body_file)
        identity = self.identify(scope)
        client = self.client_of(scope) if identity is None else None
        later: Later = []
        try:
            response = await self._in_thread(identity, client, later, self._respond, scope, body_file)
            if not response.streaming:  # the whole body: one message
                await send(
                    {
                        "type": "http.response.start",
                        "status": response.status_code,
                        "headers": self._headers(response),
                        # vantage6.http's: the answer may be given again (ConstantAnswersMiddleware)
                        "vantage6.replay": getattr(response, "replay", None),
                    }
                )
                await send({"type": "http.response.body", "body": response.content})
            elif not response.is_async:
                await self._send_streaming(response, send, identity, client, later)
            else:  # an async stream: Django's own path consumes it in the loop
                await self.send_response(response, send)
                await self._in_thread(identity, client, later, response.close)
        finally:
            body_file.close()
            for call in later:  # the request's events, once its answer is written
                call()

    def _respond(self, scope: dict, body_file) -> HttpResponseBase:
        """What ``WSGIHandler`` does for one request, minus writing the response."""
        set_script_prefix(get_script_prefix(scope))
        signals.request_started.send(sender=self.__class__, scope=scope)
        request, response = self.create_request(scope, body_file)
        if request is not None:
            response = self.get_response(request)
            response._handler_class = self.__class__  # type: ignore[attr-defined]  # as Django's handlers do
            if isinstance(response, FileResponse):
                response.block_size = self.chunk_size
        assert response is not None  # create_request gives a request or the error response
        if not response.streaming:
            # The body is complete: the request-finished work (closing files, old database
            # connections) can run in this thread now instead of costing another hop.
            response.close()
        return response

    def resolve_request(self, request: HttpRequest) -> ResolverMatch:
        """Django's, through the routes indexed by their start (the same match, fewer routes tried)."""
        if hasattr(request, "urlconf"):  # set by a middleware: Django's own way
            return super().resolve_request(request)
        resolver = get_resolver()
        routes = self._routes
        if routes is None or routes.root is not resolver:  # the first request, or another URLconf
            routes = self._routes = RouteIndex(resolver)
        match = routes.resolve(request.path_info)
        request.resolver_match = match
        return match

    async def _send_streaming(
        self, response: HttpResponseBase, send, identity: Hashable, client: Hashable, later: Later
    ) -> None:
        """A sync stream, chunk by chunk, each pulled in a worker thread (never all in memory)."""
        headers = self._headers(response)
        await send({"type": "http.response.start", "status": response.status_code, "headers": headers})
        chunks = iter(response)
        try:
            while (part := await self._in_thread(identity, client, later, next, chunks, None)) is not None:
                for chunk, _last in self.chunk_bytes(part):
                    await send({"type": "http.response.body", "body": chunk, "more_body": True})
            await send({"type": "http.response.body"})
        finally:
            await self._in_thread(identity, client, later, response.close)

    @staticmethod
    def _headers(response: HttpResponseBase) -> list[tuple[bytes, bytes]]:
        headers = [
            (
                header.encode("ascii") if isinstance(header, str) else bytes(header),
                value.encode("latin1") if isinstance(value, str) else bytes(value),
            )
            for header, value in response.items()
        ]
        cookies = response.cookies.values()
        return headers + [(b"Set-Cookie", c.output(header="").encode("ascii").strip()) for c in cookies]


class Shares:
    """The request threads each identity holds in a process, at most its share at once; its further calls
    wait in the loop, in the order they came from each of its clients (``_Turns``), for one of them to end.

    The request threads are few, and a request holds one while it waits (a store, another process's
    confirmation): without a share, one identity sending many slow requests at once took every thread
    and every other client's request waited behind them. A request over its share waits rather than
    being refused (429): the official client and node send requests in parallel and take a 429 as a
    failed call, not as one to retry. The waiting calls are bounded by the identity's connections (one
    request each at a time).

    The share is ``share`` while that leaves threads for one more identity, and shrinks as more
    identities hold or wait for threads: ``threads`` divided among them and one newcomer, but never below
    ``FAIR_SHARE_FLOOR`` (what the UI, the node and the client send at once). An identity over its shrunk
    share keeps what it holds, and takes no more until it is under it.

    The identities holding threads together take at most ``threads`` less ``NEWCOMER_THREADS``: those are
    for an identity holding none, so that however many identities flood at once (four or more full shares
    of 8 were every thread), a newcomer's request starts at once. No more calls than ``threads`` are let
    through, and when a thread comes free, the waiting identity holding the fewest goes next (its calls in
    order): a newcomer that found the reserve taken is next in line, not behind the floods.

    The clients of one identity (the addresses of the requests without a token) hold at most
    ``per_client`` threads each: one address's flood of slow logins (the right password of its own
    account: no failures to limit) leaves the rest of the anonymous share to every other address's
    logins, which start at once rather than when one of the flood's ends.
    """

    def __init__(self, share: int, threads: int = MAX_THREADS, per_client: int | None = None) -> None:
        self.share = share
        self.threads = threads
        self.floor = min(FAIR_SHARE_FLOOR, share)
        self.reserve = min(NEWCOMER_THREADS, threads - 1)
        self.per_client = share if per_client is None else per_client
        self._held: dict[Hashable, int] = {}
        self._held_by_client: dict[Hashable, int] = {}  # of the clients named (requests without a token)
        self._in_use = 0  # the threads held, by all identities
        self._waiting: dict[Hashable, _Turns] = {}

    def current(self) -> int:
        """The threads an identity may hold now."""
        active = len(self._held) + sum(1 for identity in self._waiting if identity not in self._held)
        return max(self.floor, min(self.share, self.threads // (active + 1)))

    def _may_take(self, identity: Hashable) -> bool:
        """Whether a call of ``identity`` may take a thread now."""
        held = self._held.get(identity, 0)
        if not held:
            return self._in_use < self.threads
        return held < self.current() and self._in_use < self.threads - self.reserve

    def _client_may_take(self, client: Hashable) -> bool:
        return client is None or self._held_by_client.get(client, 0) < self.per_client

    def _hold(self, identity: Hashable, client: Hashable) -> None:
        self._held[identity] = self._held.get(identity, 0) + 1
        self._in_use += 1
        if client is not None:
            self._held_by_client[client] = self._held_by_client.get(client, 0) + 1

    async def take(self, identity: Hashable, client: Hashable = None) -> None:
        """A thread of ``identity``'s share, for a call from ``client``."""
        waiting = self._waiting.get(identity)
        # not ahead of its own waiting calls, unless those wait for their client's share alone
        ahead = waiting is not None and waiting.any_of(self._client_may_take)
        if not ahead and self._client_may_take(client) and self._may_take(identity):
            self._hold(identity, client)
            return
        turn = asyncio.get_running_loop().create_future()
        waiting = self._waiting.setdefault(identity, _Turns())
        waiting.append(client, turn)
        try:
            await turn  # ``_let_in`` gave this call a place
        except asyncio.CancelledError:
            if turn.done() and not turn.cancelled():  # given its place, then cancelled: pass it on
                self.give_back(identity, client)
            # cancelled while it waited, and not passed over yet
            elif waiting.remove(client, turn) and not waiting and self._waiting.get(identity) is waiting:
                del self._waiting[identity]
            raise

    def give_back(self, identity: Hashable, client: Hashable = None) -> None:
        """A call of ``identity`` from ``client`` that ``take`` let through ended: its place goes to the
        waiting calls that may take one (``_let_in``)."""
        _release(self._held, identity)
        if client is not None:
            _release(self._held_by_client, client)
        self._in_use -= 1
        if self._waiting:
            self._let_in()

    def _let_in(self) -> None:
        """Waiting calls, each of the identity holding the fewest threads among those that may take one
        (the first of them to wait on a tie), while there are any."""
        while ready := [
            identity
            for identity, waiting in self._waiting.items()
            if self._may_take(identity) and waiting.any_of(self._client_may_take)
        ]:
            identity = min(ready, key=lambda waiter: self._held.get(waiter, 0))
            waiting = self._waiting[identity]
            client, turn = waiting.popleft(self._client_may_take)
            if not turn.done():  # not cancelled while it waited
                self._hold(identity, client)
                turn.set_result(None)
            if not waiting:
                del self._waiting[identity]


def _release(held: dict[Hashable, int], key: Hashable) -> None:
    count = held[key] - 1
    if count:
        held[key] = count
    else:
        del held[key]


class _Turns:
    """The waiting calls of one identity: those of each client in the order they came, the clients taking
    turns. All requests without a token are one identity, and each client address one client of it: one
    address's flood of slow requests (logins, with the right password of its own account: no failures to
    limit) is not ahead of every login of the other users and nodes, only of the next one's."""

    def __init__(self) -> None:
        self._of: dict[Hashable, deque[asyncio.Future]] = {}  # in the order of the clients' turns

    def __bool__(self) -> bool:
        return bool(self._of)

    def append(self, client: Hashable, turn: asyncio.Future) -> None:
        self._of.setdefault(client, deque()).append(turn)

    def any_of(self, may_take: Callable[[Hashable], bool]) -> bool:
        """Whether a client for which ``may_take`` holds has a call waiting."""
        return any(may_take(client) for client in self._of)

    def popleft(self, may_take: Callable[[Hashable], bool]) -> tuple[Hashable, asyncio.Future]:
        """The client whose turn it is among those ``may_take`` holds for (``any_of``), and its first call;
        that client's next call waits for the others'."""
        client = next(client for client in self._of if may_take(client))
        waiting = self._of.pop(client)
        turn = waiting.popleft()
        if waiting:
            self._of[client] = waiting  # last in line
        return client, turn

    def remove(self, client: Hashable, turn: asyncio.Future) -> bool:
        """Whether ``turn`` of ``client`` was waiting (and is no longer)."""
        waiting = self._of.get(client)
        if waiting is None or turn not in waiting:
            return False
        waiting.remove(turn)
        if not waiting:
            del self._of[client]
        return True


class RequestThreads:
    """The request threads of a process: up to ``max_threads``, started on demand and kept.

    What ``loop.run_in_executor`` with a ``ThreadPoolExecutor`` does for a request, in half its time: a
    thread takes a call from one queue and settles the loop's future with one ``call_soon_threadsafe``,
    without the executor's future (a lock and a condition of its own), its idle semaphore and the
    chaining of that future to the loop's (measured in bench/README, "the shared request path"). As there,
    a call whose future was cancelled before a thread took it is not made.
    """

    def __init__(self, max_threads: int) -> None:
        self._calls: queue.SimpleQueue = queue.SimpleQueue()
        self._max = max_threads
        self._lock = threading.Lock()
        self._threads: list[threading.Thread] = []
        self._idle = 0  # threads waiting for a call, less the calls queued for them
        self._closed = False
        atexit.register(self.shutdown)  # a call still running ends before the interpreter does

    def submit(self, future: asyncio.Future, func: Callable[..., Any], *args: Any) -> None:
        """``func(*args)`` in a thread, its result or exception set on ``future`` in the future's loop."""
        with self._lock:
            if self._closed:
                raise RuntimeError("cannot schedule new calls after shutdown")
            start = self._idle <= 0 and len(self._threads) < self._max
            if start:
                thread = threading.Thread(target=self._serve, name=f"http_{len(self._threads)}", daemon=True)
                self._threads.append(thread)
            else:
                self._idle -= 1
        if start:
            self._start(thread)
        self._calls.put((future, func, args))

    def _start(self, thread: threading.Thread) -> None:
        """Start a thread for a call about to be queued; without one (the system's limit of threads or
        memory), the running threads take the call, and with none running the caller gets the error and
        nothing is queued (a call it was told failed must not run later)."""
        try:
            thread.start()
        except RuntimeError:
            with self._lock:
                self._threads.remove(thread)
                if not self._threads:
                    raise
                self._idle -= 1  # the call waits for one of them

    def _serve(self) -> None:
        while (call := self._calls.get()) is not None:
            future, func, args = call
            result: Any = None
            error: BaseException | None = None
            if not future.cancelled():
                try:
                    result = func(*args)
                except BaseException as exc:  # as an executor does: the awaiting request handles it
                    error = exc
            with self._lock:
                self._idle += 1
            with contextlib.suppress(RuntimeError):  # the loop is closed: nobody awaits the answer
                future.get_loop().call_soon_threadsafe(_settle, future, result, error)
            del call, future, func, args, result, error  # nothing of a request stays in an idle thread

    def shutdown(self, wait: bool = True) -> None:
        """No new calls; the threads end once the calls queued before are made."""
        with self._lock:
            if self._closed:
                return
            self._closed, threads = True, list(self._threads)
        for _ in threads:
            self._calls.put(None)
        if wait:
            for thread in threads:
                if thread is not threading.current_thread():
                    thread.join()


def _settle(future: asyncio.Future, result: Any, error: BaseException | None) -> None:
    if future.cancelled():
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(result)


def _call_from(loop: asyncio.AbstractEventLoop, later: Later, func: Callable[..., Any], args: tuple) -> Any:
    """``func(*args)`` in a worker thread, with what ``async_to_sync`` looks up to reach ``loop``."""
    local = SyncToAsync.threadlocal
    local.main_event_loop, local.main_event_loop_pid, local.task_context = loop, os.getpid(), None
    return bridge.serving(later, func, *args)


def _replay(first: dict, receive: Callable[[], Any]) -> Callable[[], Any]:
    """``receive`` that gives ``first`` again before the messages still to come."""
    pending = [first]

    async def replayed() -> dict:
        return pending.pop() if pending else await receive()

    return replayed


def _with_body_length(scope: dict, body_file) -> dict:
    """The scope of a request whose body came chunked, with the ``Content-Length`` of that body:
    without one, the API would read the body as empty. Its size is within the limits already
    (``vantage6.limits`` refuses a chunked body as it grows past them)."""
    if any(name == b"content-length" for name, _ in scope["headers"]):
        return scope
    size = body_file.seek(0, os.SEEK_END)
    body_file.seek(0)
    if not size:
        return scope
    return {**scope, "headers": [*scope["headers"], (b"content-length", str(size).encode())]}


OUT_OF_STATIC = "The path leads out of the static files"


def _no_view(_request: HttpRequest) -> HttpResponse:
    raise AssertionError("only the middleware's process_response is called")


class StaticFilesHandler(ASGIStaticFilesHandler):
    """The admin's and API docs' static files with the security headers of every other answer
    (``nosniff``, ``X-Frame-Options``, referrer and opener policies, HSTS): Django serves them without
    the middleware chain, and some are HTML pages of this origin that could otherwise be framed."""

    def __init__(self, application: ASGIHandler) -> None:
        super().__init__(application)
        self._headers = (SecurityMiddleware(_no_view), XFrameOptionsMiddleware(_no_view))

    def serve(self, request: HttpRequest) -> HttpResponse | FileResponse:
        try:
            return super().serve(request)
        except SuspiciousFileOperation:
            # A path out of the static folders (``..``), which anyone can send: Django's static handler
            # lets this become a server error. A 400, without the error's text (it names server paths)
            # and without a traceback in the log.
            return json_400(request, OUT_OF_STATIC)

    async def get_response_async(self, request: HttpRequest) -> HttpResponseBase:
        response = await super().get_response_async(request)
        for middleware in self._headers:
            # A file is a streaming answer, whose headers these middleware set as any other's.
            response = middleware.process_response(request, cast(HttpResponse, response))
        return response
