"""The scoring server's ASGI application (Starlette): ``/ping``, ``/health``, ``/version``, ``/invocations``.

Each request to ``/invocations`` takes the model being served once (:class:`~.rest_models.ModelSlot`)
and scores with it to the end, so a registry swap never changes the model under a running request.
The body is read against a size limit: a ``Content-Length`` over it is answered 413 before a byte of
the body is read, and a chunked body is cut off as soon as it passes the limit. Parsing, the signature
check and the model run in a worker thread, so ``/ping`` answers while a slow prediction runs; a
prediction over the timeout is answered 504 (its thread finishes in the background).

:func:`create_app` is the factory each ``uvicorn`` worker process calls (``--workers N``): it reads
the settings the ``serve`` command put in ``DELTAFLOW_SERVE_SPEC``, loads the model version the
command resolved, and polls the registry on its own.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
from dataclasses import asdict, dataclass
from typing import Any, AsyncIterator, Optional

from deltaflow.errors import DeltaflowError
from deltaflow.serving.rest_models import ModelSlot, ModelWatcher, ServedModel
from deltaflow.serving.rest_protocol import error_json, parse_request, predictions_json

__all__ = ["ServeSettings", "build_app", "create_app", "score", "configure_logging", "SPEC_ENV", "VERSION_HEADER"]

SPEC_ENV = "DELTAFLOW_SERVE_SPEC"
VERSION_HEADER = "x-deltaflow-model-version"
_JSON = "application/json"
_log = logging.getLogger("deltaflow.serving")


@dataclass(frozen=True)
class ServeSettings:
    """What a server process needs; JSON in ``DELTAFLOW_SERVE_SPEC`` for worker processes."""

    model_uri: str
    tracking_uri: Optional[str] = None
    version: Optional[int] = None  # the registry version the command resolved (all workers start on it)
    poll_interval: float = 0.0  # seconds; 0: never look at the registry again
    max_body_bytes: int = 64 * 2**20
    timeout_s: float = 60.0
    log_level: str = "info"

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> "ServeSettings":
        return cls(**json.loads(text))


class _TooLarge(Exception):
    def __init__(self, size: int, exact: bool) -> None:
        super().__init__(size)
        self.size, self.exact = size, exact


def score(served: ServedModel, body: bytes, content_type: Optional[str]) -> tuple[int, bytes]:
    """Status and JSON body for one ``/invocations`` request (blocking: run it off the event loop)."""
    model = served.model
    try:
        data, params = parse_request(body, content_type, model.metadata.signature)
    except DeltaflowError as exc:  # a malformed body
        return exc.http_status, error_json(exc.error_code, exc.message)
    except Exception as exc:  # noqa: BLE001 - a shape the parser's own checks did not foresee
        return 400, error_json("BAD_REQUEST", f"the request could not be read as model input: "
                               f"{type(exc).__name__}: {exc}")
    try:
        predictions = model.predict(data, params)
    except DeltaflowError as exc:  # input the signature refuses
        return exc.http_status, error_json(exc.error_code, exc.message)
    except Exception as exc:  # noqa: BLE001 - the model's own failure on this input, answered as MLflow does
        _log.info("prediction failed", exc_info=True)
        return 400, error_json("BAD_REQUEST", "Encountered an unexpected error while evaluating the model. Verify "
                               "that the input is compatible with the model for inference. Error: "
                               f"{type(exc).__name__}: {exc}")
    try:
        return 200, predictions_json(predictions)
    except Exception as exc:  # noqa: BLE001
        return 500, error_json("INTERNAL_ERROR", f"the model's predictions cannot be written as JSON: {exc}")


async def _read_body(request: Any, limit: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise _TooLarge(int(declared), True)  # answered before reading any of the body
    chunks, total = [], 0
    async for chunk in request.stream():
        total += len(chunk)
        if total > limit:
            raise _TooLarge(total, False)
        chunks.append(chunk)
    return b"".join(chunks)


def build_app(slot: ModelSlot, settings: ServeSettings, watcher: Optional[ModelWatcher] = None) -> Any:
    """The Starlette app serving ``slot``; ``watcher`` (if any) polls while the app runs."""
    from starlette.applications import Starlette
    from starlette.requests import ClientDisconnect
    from starlette.responses import Response
    from starlette.routing import Route

    from deltaflow import __version__

    limit, timeout = settings.max_body_bytes, settings.timeout_s

    def respond(status: int, body: bytes, served: Optional[ServedModel] = None, **headers: str) -> Any:
        if served is not None and served.version is not None:
            headers[VERSION_HEADER] = str(served.version)
        return Response(body, status_code=status, media_type=_JSON, headers=headers)

    async def ping(request: Any) -> Any:
        return Response("\n", media_type=_JSON)

    async def version(request: Any) -> Any:
        return Response(__version__, media_type=_JSON)

    async def invocations(request: Any) -> Any:
        try:
            body = await _read_body(request, limit)
        except ClientDisconnect:  # the client went away mid-body: nobody to answer
            return Response(status_code=400)
        except _TooLarge as exc:
            size = f"{exc.size} bytes" if exc.exact else f"more than {limit} bytes"
            # Connection: close, as the rest of the body is never read on this connection.
            return respond(413, error_json("REQUEST_LIMIT_EXCEEDED", f"the request body is {size}; this server "
                                           f"accepts at most {limit} bytes (serve --max-body-size)"),
                           connection="close")
        served = slot.current  # this request's model, whatever is swapped in meanwhile
        # The loop's default executor: a plain future (no task, no capacity limiter) costs less per
        # request than anyio's worker-thread call.
        work = asyncio.get_running_loop().run_in_executor(None, score, served, body,
                                                          request.headers.get("content-type"))
        try:
            status, payload = await asyncio.wait_for(work, timeout)
        except asyncio.TimeoutError:
            return respond(504, error_json("DEADLINE_EXCEEDED", f"the prediction took longer than {timeout:g} s "
                                           "(serve --timeout)"), served)
        return respond(status, payload, served)

    @contextlib.asynccontextmanager
    async def lifespan(app: Any) -> AsyncIterator[None]:
        task = asyncio.create_task(watcher.run()) if watcher is not None else None
        try:
            yield
        finally:
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task

    routes = [Route("/ping", ping, methods=["GET"]), Route("/health", ping, methods=["GET"]),
              Route("/version", version, methods=["GET"]), Route("/invocations", invocations, methods=["POST"])]
    return Starlette(routes=routes, lifespan=lifespan)


def app_for(settings: ServeSettings, served: Optional[ServedModel] = None) -> Any:
    """The app for ``settings``, loading the model unless ``served`` is already loaded."""
    from deltaflow.serving.rest_models import load_served, watches_registry

    if served is None:
        served = load_served(settings.model_uri, settings.tracking_uri, version=settings.version)
    slot = ModelSlot(served)
    watcher = (ModelWatcher(slot, settings.tracking_uri, settings.poll_interval)
               if settings.poll_interval > 0 and watches_registry(settings.model_uri) else None)
    return build_app(slot, settings, watcher)


def create_app() -> Any:
    """uvicorn's factory in each worker process: the settings come from ``DELTAFLOW_SERVE_SPEC``."""
    raw = os.environ.get(SPEC_ENV)
    if not raw:
        raise RuntimeError(f"{SPEC_ENV} is not set; start the server with `deltaflow models serve`")
    settings = ServeSettings.from_json(raw)
    configure_logging(settings.log_level)
    return app_for(settings)


def _no_delay_protocol() -> type:
    """uvicorn's HTTP protocol ("auto": httptools when installed, else h11) with TCP_NODELAY set on
    every connection.

    With ``--workers N`` uvicorn binds the listening socket itself with protocol number 0, and asyncio
    sets TCP_NODELAY only on connections of sockets whose protocol is TCP; uvicorn writes a response's
    head and body separately, so without it the body waits for the client's delayed ACK (~40 ms per
    request on one keep-alive connection). Single-worker servers already get it from asyncio.
    """
    import socket

    from uvicorn.protocols.http.auto import AutoHTTPProtocol

    class NoDelayHTTPProtocol(AutoHTTPProtocol):  # type: ignore[valid-type, misc]
        def connection_made(self, transport: Any) -> None:
            sock = transport.get_extra_info("socket")
            if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
                with contextlib.suppress(OSError):
                    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            super().connection_made(transport)

    NoDelayHTTPProtocol.__module__, NoDelayHTTPProtocol.__qualname__ = __name__, "NoDelayHTTPProtocol"
    return NoDelayHTTPProtocol


def __getattr__(name: str) -> Any:
    # Built on first use, so this module imports without uvicorn; uvicorn's worker processes find the
    # class by this name when they unpickle their configuration.
    if name == "NoDelayHTTPProtocol":
        cls = globals()[name] = _no_delay_protocol()
        return cls
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def configure_logging(level: str) -> None:
    """deltaflow's serving log lines (model swaps, refused versions) on stderr, beside uvicorn's."""
    logger = logging.getLogger("deltaflow")
    logger.setLevel(level.upper())
    if not logger.handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(levelname)s:     %(message)s"))
        logger.addHandler(handler)
