"""``LocalDatabricks``: a local emulator of the Databricks REST API, for testing code that drives
Databricks through databricks-sdk without a workspace.

It is a threaded HTTP server on 127.0.0.1 speaking the documented request and response shapes and
error codes of the parts of the API deltaflow uses: Jobs 2.1/2.2 (jobs, one-time runs, outputs),
Workspace (``mkdirs`` / ``import`` / ``export`` / ``get-status`` / ``list`` / ``delete``), DBFS, the
Files API for Unity Catalog Volumes, SCIM ``Me``, clusters ``get``/``list`` and the host-metadata
probe the SDK makes at start. Job tasks really run as local subprocesses (see ``_dbx_exec``).
Use it through the real client::

    with LocalDatabricks() as dbx:
        w = dbx.workspace_client()          # databricks.sdk.WorkspaceClient(host=dbx.host, token=dbx.token)
        run = w.jobs.submit(run_name="t", tasks=[...]).result()

or through the ``local_databricks`` pytest fixture of :mod:`deltaflow.testing`.
"""

from __future__ import annotations

import base64
import email.parser
import json
import os
import random
import re
import shutil
import string
import subprocess
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Callable, Optional
from urllib.parse import parse_qs, unquote, urlsplit

from deltaflow.testing._dbx_jobs import JobsService
from deltaflow.testing._dbx_model import RunRecord
from deltaflow.testing._dbx_storage import ApiError, DbfsStore, RawResponse, VolumeStore, WorkspaceStore, invalid

__all__ = ["LocalDatabricks"]

_DROPPED_ENV = ("DELTAFLOW_TRACKING_URI", "DELTAFLOW_ENGINE", "DATABRICKS_RUNTIME_VERSION")
_JSON = "application/json"


class LocalDatabricks:
    """A Databricks workspace on 127.0.0.1 backed by a local folder; start with ``with`` or :meth:`start`.

    ``clusters`` maps existing cluster ids to their spec (``spark_env_vars`` reach the tasks run on them);
    one cluster, :attr:`cluster_id`, exists by default. ``volumes`` lists ``catalog.schema.volume`` names
    the Files API serves. ``startup_seconds`` is how long a run stays PENDING (a cluster start).
    ``python`` runs the tasks; ``env`` is added to every task's environment.
    """

    cluster_id = "0000-000000-localdbx"

    def __init__(self, root: Optional[str | os.PathLike[str]] = None, *, token: str = "dapi-local-emulator",
                 user_name: str = "local-user@example.com", clusters: Optional[dict[str, dict[str, Any]]] = None,
                 volumes: tuple[str, ...] = ("main.default.files",), python: str = sys.executable,
                 startup_seconds: float = 0.05, env: Optional[dict[str, str]] = None, port: int = 0) -> None:
        self._own_root = root is None
        self.root = Path(root) if root is not None else Path(tempfile.mkdtemp(prefix="local-databricks-"))
        self.token, self.user_name, self.python = token, user_name, python
        self.startup_seconds = startup_seconds
        self.workspace_id = "1234567890123456"
        self.lock = threading.RLock()
        self.clusters: dict[str, dict[str, Any]] = {
            self.cluster_id: {"cluster_name": "local", "spark_version": "15.4.x-scala2.12", "num_workers": 0}}
        self.clusters.update(clusters or {})
        self.workspace = WorkspaceStore(self.root / "workspace", f"/Users/{user_name}")
        self.dbfs = DbfsStore(self.root / "dbfs")
        self.volumes = VolumeStore(self.root / "Volumes", volumes)
        self.jobs = JobsService(self)
        self.requests: list[tuple[str, str, int]] = []
        self._extra_env = dict(env or {})
        self._port = port
        self._server: Optional[ThreadingHTTPServer] = None
        self._thread: Optional[threading.Thread] = None
        self._job_clusters: dict[tuple[int, str], str] = {}
        self._installed: dict[str, bool] = {}

    # -- life cycle ----------------------------------------------------------------------------------
    def start(self) -> "LocalDatabricks":
        if self._server is None:
            self._server = ThreadingHTTPServer(("127.0.0.1", self._port), _handler_for(self))
            self._server.daemon_threads = True
            self._thread = threading.Thread(target=self._server.serve_forever, name="local-databricks",
                                            kwargs={"poll_interval": 0.2}, daemon=True)
            self._thread.start()
        return self

    def stop(self) -> None:
        """Cancels active runs (killing their processes), stops the server and removes a temporary root."""
        for run in list(self.jobs.runs.values()):
            run.cancel_event.set()
        for thread in list(self.jobs.threads):
            thread.join(timeout=15)
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._own_root:
            shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> "LocalDatabricks":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def host(self) -> str:
        if self._server is None:
            raise RuntimeError("LocalDatabricks is not started: call start() or use it in a with block")
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def env(self) -> dict[str, str]:
        """``DATABRICKS_HOST`` and ``DATABRICKS_TOKEN`` for code that builds ``WorkspaceClient()`` itself."""
        return {"DATABRICKS_HOST": self.host, "DATABRICKS_TOKEN": self.token}

    def workspace_client(self, **kwargs: Any) -> Any:
        """A real ``databricks.sdk.WorkspaceClient`` authenticated to this emulator with its token."""
        from databricks.sdk import WorkspaceClient

        return WorkspaceClient(host=self.host, token=self.token, auth_type="pat", **kwargs)

    # -- helpers for tests -----------------------------------------------------------------------------
    def run_history(self, run_id: int) -> list[str]:
        """Every life-cycle state a job run (or task run) went through, in order, e.g.
        ``['PENDING', 'RUNNING', 'TERMINATING', 'TERMINATED']``."""
        with self.lock:
            run, task = self.jobs._lookup(run_id)
            return [state for state, _, _ in (task or run).history]

    def run_record(self, run_id: int) -> RunRecord:
        with self.lock:
            return self.jobs._lookup(run_id)[0]

    def fire_schedule(self, job_id: int) -> int:
        """Starts the run a job's cron schedule would start now (trigger ``PERIODIC``); returns its run id.
        Schedules are validated and kept, but not fired by the wall clock."""
        with self.lock:
            job = self.jobs._job(job_id)
            schedule = job["settings"].get("schedule")
        if not schedule:
            raise ValueError(f"job {job_id} has no schedule")
        if schedule.get("pause_status") == "PAUSED":
            raise ValueError(f"job {job_id}'s schedule is PAUSED")
        return self.jobs.run_now({}, {"job_id": job_id}, trigger="PERIODIC")["run_id"]

    def wait_idle(self, timeout: float = 60.0) -> None:
        """Waits until no run is active."""
        deadline = time.time() + timeout
        while any(not r.done for r in list(self.jobs.runs.values())):
            if time.time() > deadline:
                raise TimeoutError("runs still active after {timeout}s")
            time.sleep(0.05)

    # -- what the run driver asks of the workspace --------------------------------------------------
    @staticmethod
    def now_ms() -> int:
        return int(time.time() * 1000)

    def task_env(self, extra: dict[str, str]) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("DATABRICKS_") and k not in _DROPPED_ENV
               and not k.startswith("PYTEST_")}
        env.update(self._extra_env)
        env.update(self.env())
        env["PYTHONUNBUFFERED"] = "1"
        env.update(extra)
        return env

    def new_cluster_id(self) -> str:
        letters = "".join(random.choices(string.ascii_lowercase, k=5)) + str(random.randint(100, 999))
        return time.strftime("%m%d-%H%M%S-", time.gmtime()) + letters

    def job_cluster_id(self, run: RunRecord, key: str) -> str:
        with self.lock:
            return self._job_clusters.setdefault((run.run_id, key), self.new_cluster_id())

    def requirement_installed(self, requirement: str) -> bool:
        """Whether a pip requirement (``name``, ``name==1.2``, ``name>=1``) is met in the task Python."""
        with self.lock:
            if requirement in self._installed:
                return self._installed[requirement]
        check = ("import sys\nfrom importlib import metadata\nimport re\n"
                 "req = sys.argv[1]\nname = re.split(r'[\\s\\[<>=!~;]', req, maxsplit=1)[0]\n"
                 "try:\n    version = metadata.version(name)\nexcept metadata.PackageNotFoundError:\n"
                 "    sys.exit(1)\ntry:\n    from packaging.requirements import Requirement\n"
                 "    sys.exit(0 if Requirement(req).specifier.contains(version, prereleases=True) else 1)\n"
                 "except ImportError:\n    sys.exit(0)\n")
        ok = subprocess.run([self.python, "-c", check, requirement], capture_output=True,
                            timeout=60).returncode == 0
        with self.lock:
            self._installed[requirement] = ok
        return ok

    def wait_for_slot(self, run: RunRecord) -> None:
        self.jobs.wait_for_slot(run)

    def run_finished(self, run: RunRecord) -> None:
        self.jobs.run_finished(run)

    # -- small endpoints -------------------------------------------------------------------------------
    def host_metadata(self) -> dict[str, Any]:
        return {"oidc_endpoint": f"{self.host}/oidc", "workspace_id": self.workspace_id}

    def scim_me(self) -> dict[str, Any]:
        return {"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"], "id": "4242424242424242",
                "userName": self.user_name, "displayName": self.user_name.split("@")[0], "active": True,
                "emails": [{"value": self.user_name, "type": "work", "primary": True}],
                "groups": [{"display": "users", "value": "1", "type": "direct"}]}

    def cluster_json(self, cluster_id: str) -> dict[str, Any]:
        spec = self.clusters.get(cluster_id)
        if spec is None:
            raise invalid(f"Cluster {cluster_id} does not exist")
        return {"cluster_id": cluster_id, "state": "RUNNING", "creator_user_name": self.user_name,
                "cluster_source": "UI", **spec}


# -- HTTP ---------------------------------------------------------------------------------------------
Route = tuple[str, "re.Pattern[str]", Callable[..., Any]]


def _routes(db: LocalDatabricks) -> list[Route]:
    jobs, ws, dbfs = db.jobs, db.workspace, db.dbfs
    job_routes = {("POST", "jobs/create"): jobs.create, ("GET", "jobs/get"): jobs.get, ("GET", "jobs/list"): jobs.list,
                  ("POST", "jobs/reset"): jobs.reset, ("POST", "jobs/update"): jobs.update,
                  ("POST", "jobs/delete"): jobs.delete, ("POST", "jobs/run-now"): jobs.run_now,
                  ("POST", "jobs/runs/submit"): jobs.submit, ("GET", "jobs/runs/get"): jobs.get_run,
                  ("GET", "jobs/runs/get-output"): jobs.get_output, ("POST", "jobs/runs/cancel"): jobs.cancel,
                  ("POST", "jobs/runs/cancel-all"): jobs.cancel_all, ("GET", "jobs/runs/list"): jobs.list_runs,
                  ("POST", "jobs/runs/delete"): jobs.delete_run}
    routes: list[Route] = [(m, re.compile(rf"^/api/2\.[12]/{re.escape(p)}$"), h) for (m, p), h in job_routes.items()]

    def ws_import(q: dict, b: dict) -> dict:
        content = b.get("content", b"")
        if isinstance(content, str):
            try:
                content = base64.b64decode(content, validate=True)
            except ValueError as exc:
                raise invalid(f"content must be base64-encoded: {exc}") from None
        ws.import_(b.get("path"), content, b.get("format"), b.get("language"), str(b.get("overwrite")).lower() == "true")
        return {}

    def ws_export(q: dict, b: dict) -> Any:
        obj, data = ws.export(q.get("path"))
        if str(q.get("direct_download")).lower() == "true":
            return RawResponse(data)
        ext = {"PYTHON": "py", "SQL": "sql", "SCALA": "scala", "R": "r"}.get(obj.language or "", "")
        return {"content": base64.b64encode(data).decode(), "file_type": ext}

    simple: dict[tuple[str, str], Callable[[dict, dict], Any]] = {
        ("GET", "/.well-known/databricks-config"): lambda q, b: db.host_metadata(),
        ("GET", "/api/2.0/preview/scim/v2/Me"): lambda q, b: db.scim_me(),
        ("GET", "/api/2.1/clusters/get"): lambda q, b: db.cluster_json(q.get("cluster_id", "")),
        ("GET", "/api/2.1/clusters/list"): lambda q, b: {"clusters": [db.cluster_json(c) for c in db.clusters]},
        ("POST", "/api/2.0/workspace/mkdirs"): lambda q, b: ws.mkdirs(b.get("path")) or {},
        ("POST", "/api/2.0/workspace/import"): ws_import,
        ("GET", "/api/2.0/workspace/export"): ws_export,
        ("GET", "/api/2.0/workspace/get-status"): lambda q, b: ws.get_status(q.get("path")),
        ("GET", "/api/2.0/workspace/list"): lambda q, b: {"objects": ws.list(q.get("path"))},
        ("POST", "/api/2.0/workspace/delete"): lambda q, b: ws.delete(b.get("path"), bool(b.get("recursive"))) or {},
        ("POST", "/api/2.0/dbfs/create"): lambda q, b: {"handle": dbfs.create(b.get("path"), bool(b.get("overwrite")))},
        ("POST", "/api/2.0/dbfs/add-block"): lambda q, b: dbfs.add_block(b.get("handle"), b.get("data")) or {},
        ("POST", "/api/2.0/dbfs/close"): lambda q, b: dbfs.close(b.get("handle")) or {},
        ("POST", "/api/2.0/dbfs/put"): lambda q, b: dbfs.put(b.get("path"), b.get("contents"),
                                                            bool(b.get("overwrite"))) or {},
        ("GET", "/api/2.0/dbfs/get-status"): lambda q, b: dbfs.info(q.get("path")),
        ("GET", "/api/2.0/dbfs/list"): lambda q, b: {"files": dbfs.list(q.get("path"))},
        ("GET", "/api/2.0/dbfs/read"): lambda q, b: dbfs.read(q.get("path"), int(q.get("offset") or 0),
                                                             int(q.get("length") or 512 * 1024)),
        ("POST", "/api/2.0/dbfs/mkdirs"): lambda q, b: dbfs.mkdirs(b.get("path")) or {},
        ("POST", "/api/2.0/dbfs/delete"): lambda q, b: dbfs.delete(b.get("path"), bool(b.get("recursive"))) or {},
        ("POST", "/api/2.0/dbfs/move"): lambda q, b: dbfs.move(b.get("source_path"), b.get("destination_path")) or {},
        ("POST", "/api/2.0/fs/create-upload-part-urls"): lambda q, b: {"upload_part_urls": db.volumes.part_urls(
            db.host, b.get("path"), b.get("session_token", ""), int(b.get("start_part_number", 1)),
            int(b.get("count", 1)))},
        ("POST", "/api/2.0/fs/create-download-url"): lambda q, b: {
            "url": db.volumes.download_url(db.host, q.get("path") or b.get("path")), "headers": []},
    }
    routes += [(m, re.compile(f"^{re.escape(p)}$"), h) for (m, p), h in simple.items()]
    return routes


def _handler_for(db: LocalDatabricks) -> type[BaseHTTPRequestHandler]:
    from deltaflow.testing._dbx_files import files_api, presigned

    routes = _routes(db)

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        server_version = "LocalDatabricks"

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the server logs nothing
            return

        def _body(self) -> bytes:
            if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                chunks = []
                while True:
                    size = int(self.rfile.readline().strip() or b"0", 16)
                    if size == 0:
                        self.rfile.readline()
                        return b"".join(chunks)
                    chunks.append(self.rfile.read(size))
                    self.rfile.readline()
            length = int(self.headers.get("Content-Length") or 0)
            return self.rfile.read(length) if length else b""

        def _send(self, status: int, data: bytes, content_type: str = _JSON,
                  headers: Optional[dict[str, str]] = None) -> None:
            # Recorded before answering, so a client that got its answer finds its request in the log.
            db.requests.append((self.command, urlsplit(self.path).path, status))
            self.send_response(status)
            head = {"Content-Type": content_type, "Content-Length": str(len(data)), **(headers or {})}
            for name, value in head.items():
                self.send_header(name, value)
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(data)

        def _error(self, err: ApiError) -> None:
            self._send(err.status, json.dumps({"error_code": err.error_code, "message": err.message}).encode())

        def _dispatch(self) -> None:
            url = urlsplit(self.path)
            path = unquote(url.path)
            query = {k: v[-1] for k, v in parse_qs(url.query, keep_blank_values=True).items()}
            raw = self._body()
            try:
                if path.startswith("/_presigned/"):
                    return self._answer(presigned(db, self.command, path[len("/_presigned/"):], raw, self.headers))
                if path != "/.well-known/databricks-config" and \
                        self.headers.get("Authorization") != f"Bearer {db.token}":
                    # Databricks answers a bad token with its HTML error page; the SDK reads the <pre> text.
                    page = ("<html><head><title>Error 403 Invalid access token.</title></head><body>"
                            "<h2>HTTP ERROR 403</h2><p>Problem accessing "
                            f"{url.path}. Reason:<pre>    Invalid access token.</pre></p></body></html>")
                    return self._send(403, page.encode(), "text/html;charset=utf-8")
                if path.startswith(("/api/2.0/fs/files/", "/api/2.0/fs/directories/")):
                    return self._answer(files_api(db, self.command, path, query, raw, self.headers))
                body = self._parse(raw)
                for method, pattern, handler in routes:
                    if pattern.match(path):
                        if method != self.command:
                            continue
                        return self._answer(handler(query, body))
                raise ApiError(404, "ENDPOINT_NOT_FOUND", f"No API found for '{self.command} {url.path}'")
            except ApiError as err:
                self._error(err)
            except Exception as exc:  # noqa: BLE001 - the emulator answers 500 like the service would
                self._error(ApiError(500, "INTERNAL_ERROR", f"LocalDatabricks failed: {exc!r}"))

        def _parse(self, raw: bytes) -> dict[str, Any]:
            ctype = self.headers.get("Content-Type", "")
            if ctype.startswith("multipart/form-data"):
                message = email.parser.BytesParser().parsebytes(
                    f"Content-Type: {ctype}\r\nMIME-Version: 1.0\r\n\r\n".encode() + raw)
                form: dict[str, Any] = {}
                for part in message.get_payload():
                    name = part.get_param("name", header="content-disposition")
                    payload = part.get_payload(decode=True) or b""
                    form[name] = payload if name == "content" else payload.decode()
                return form
            if not raw.strip():
                return {}
            try:
                body = json.loads(raw)
            except ValueError:
                raise ApiError(400, "MALFORMED_REQUEST", "Invalid JSON given in the body of the request - "
                                                         "failed to parse given JSON") from None
            if not isinstance(body, dict):
                raise ApiError(400, "MALFORMED_REQUEST", "The request body must be a JSON object.")
            return body

        def _answer(self, result: Any) -> None:
            if isinstance(result, RawResponse):
                ctype = result.headers.pop("Content-Type", "application/octet-stream")
                return self._send(result.status, result.data, ctype, result.headers)
            self._send(200, json.dumps(result if result is not None else {}).encode())

        do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = do_PATCH = _dispatch

    return Handler
