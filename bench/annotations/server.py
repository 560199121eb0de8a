"""The local annotation server: one page, a small JSON API, and images looked up by (run id, sample index).

Security: it binds to 127.0.0.1 unless told otherwise; every request must carry the token printed at start (query
parameter `token` or header `X-Bench-Token`), else 403; images are found only in the catalogue of the selected runs,
so a path a client makes up (`..`, another run, an index the run does not have) is a 404.
"""

from __future__ import annotations

import hmac
import json
import re
import secrets
import sys
import threading
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from bench.annotations.items import QUESTIONS, Catalogue, Item
from bench.annotations.page import PAGE
from bench.annotations.transfer import export_rows, to_csv
from bench.errors import BenchError

ANNOTATOR_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@+-]{0,63}$")
_IMAGE_RE = re.compile(r"^/img/([0-9a-f]{1,64})/([0-9]{1,9})/(original|reconstruction)\.png$")
MAX_BODY = 10_000  # bytes of an answer request; an answer is a few dozen
REQUEST_TIMEOUT_S = 30
ANSWERS = {"recognisable": {"yes": 1.0, "no": 0.0}, "pair": {"left": "a", "right": "b"}}


class AnnotationService:
    """What the HTTP handler calls: progress and next item per annotator, answers into the store, export."""

    def __init__(self, catalogue: Catalogue) -> None:
        self.catalogue = catalogue
        self.store_path = catalogue.results / "bench.sqlite"

    def _store(self) -> Any:
        from bench.store import Store

        return Store(self.store_path)

    def answered(self, annotator: str) -> set[str]:
        """Keys of the catalogue's items this annotator has answered (from the store, so a restart resumes)."""
        cat = self.catalogue
        runs = list(cat.runs)
        with self._store() as st:
            if cat.task == "recognisable":
                done = {("r", (a["run_id"], int(a["sample_index"])))
                        for a in st.annotations(kind="recognisable", run_ids=runs, annotator=annotator)}
                return {it.key for it in cat.items if ("r", it.refs[0]) in done}
            pairs = {frozenset([(p["run_a"], int(p["index_a"])), (p["run_b"], int(p["index_b"]))])
                     for p in st.pair_annotations(run_ids=runs, annotator=annotator)}
            return {it.key for it in cat.items if frozenset(it.refs) in pairs}

    def state(self, annotator: str) -> dict[str, Any]:
        done = self.answered(annotator)
        nxt = next((it for it in self.catalogue.items if it.key not in done), None)
        return {"annotator": annotator, "task": self.catalogue.task, "total": len(self.catalogue.items),
                "done": len(done), "item": None if nxt is None else self._item(nxt)}

    def _item(self, it: Item) -> dict[str, Any]:
        first = it.refs[0]
        out = {"key": it.key, "kind": it.kind, "sample_id": it.sample_id, "question": QUESTIONS[it.kind],
               "original": f"/img/{first[0]}/{first[1]}/original.png",
               "reconstructions": [f"/img/{r}/{i}/reconstruction.png" for r, i in it.refs]}
        return out

    def answer(self, annotator: str, key: str, answer: str) -> dict[str, Any]:
        it = self.catalogue.by_key.get(key)
        if it is None:
            raise LookupError(f"no item {key!r} among the selected runs")
        value = ANSWERS[it.kind].get(answer)
        if value is None:
            raise ValueError(f"answer {answer!r} is not one of {', '.join(ANSWERS[it.kind])}")
        with self._store() as st:
            if it.kind == "recognisable":
                (run_id, index), = it.refs
                st.set_annotation(run_id, index, it.sample_id, "recognisable", float(value), annotator)
            else:
                st.set_pair_annotation(it.refs[0], it.refs[1], it.sample_id, str(value), annotator)
        return self.state(annotator)

    def export_csv(self) -> str:
        with self._store() as st:
            return to_csv(export_rows(st, run_ids=list(self.catalogue.runs)))

    def image(self, run_id: str, index: int, which: str) -> bytes | None:
        cat = self.catalogue
        return cat.original_png(run_id, index) if which == "original" else cat.reconstruction_png(run_id, index)


def make_handler(service: AnnotationService, token: str) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        server_version = "bench-annotate"
        sys_version = ""
        timeout = REQUEST_TIMEOUT_S  # a client that stalls mid-request does not hold a thread forever

        def log_message(self, *args: Any) -> None:  # quiet: the terminal shows the URL and errors only
            pass

        def _send(self, status: int, body: bytes, ctype: str, extra: dict[str, str] | None = None) -> None:
            self.send_response(status)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Cache-Control", "no-store")
            self.send_header("X-Content-Type-Options", "nosniff")
            self.send_header("Referrer-Policy", "no-referrer")
            for k, v in (extra or {}).items():
                self.send_header(k, v)
            self.end_headers()
            self.wfile.write(body)

        def _json(self, status: int, obj: Any) -> None:
            self._send(status, json.dumps(obj).encode(), "application/json")

        def _error(self, status: HTTPStatus, message: str) -> None:
            self._json(status, {"error": message})

        def _authorised(self, query: dict[str, list[str]]) -> bool:
            given = self.headers.get("X-Bench-Token") or (query.get("token") or [""])[0]
            return hmac.compare_digest(given.encode(), token.encode())

        def _annotator(self, value: str | None) -> str | None:
            return value if value and ANNOTATOR_RE.match(value) else None

        def _content_length(self) -> tuple[int, tuple[HTTPStatus, str] | None]:
            """The body's length from the headers, or the refusal: 411 without a Content-Length (chunked bodies
            included), 400 for one that is not a non-negative integer, 413 above MAX_BODY bytes."""
            given = self.headers.get_all("Content-Length") or []
            if self.headers.get("Transfer-Encoding") or not given:
                return 0, (HTTPStatus.LENGTH_REQUIRED, "a Content-Length header is required")
            if len(set(given)) != 1 or not re.fullmatch(r"[0-9]{1,12}", given[0].strip()):
                return 0, (HTTPStatus.BAD_REQUEST, "bad request: Content-Length is not a non-negative integer")
            length = int(given[0])
            if length > MAX_BODY:
                return 0, (HTTPStatus.REQUEST_ENTITY_TOO_LARGE, f"request too large (at most {MAX_BODY} bytes)")
            return length, None

        def _guarded(self, handle: Any) -> None:
            """Any error the handlers did not expect is a 500 JSON response (and a line on stderr), never a dropped
            connection."""
            try:
                handle()
            except (ConnectionError, TimeoutError):  # the client went away or stalled: nobody to answer
                self.close_connection = True
            except Exception as exc:
                self.close_connection = True
                print(f"bench annotate serve: {self.command} {urlsplit(self.path).path}: {type(exc).__name__}: "
                      f"{exc}", file=sys.stderr)
                try:
                    self._error(HTTPStatus.INTERNAL_SERVER_ERROR, f"internal error: {type(exc).__name__}")
                except OSError:
                    pass

        def do_GET(self) -> None:  # noqa: N802 (http.server's name)
            self._guarded(self._get)

        def do_POST(self) -> None:  # noqa: N802
            self._guarded(self._post)

        def _get(self) -> None:
            url = urlsplit(self.path)
            query = parse_qs(url.query)
            if not self._authorised(query):
                return self._error(HTTPStatus.FORBIDDEN, "missing or wrong token (use the URL printed at start)")
            if url.path in ("/", "/index.html"):
                return self._send(200, PAGE.encode(), "text/html; charset=utf-8",
                                  {"Content-Security-Policy": "default-src 'self'; img-src 'self'; "
                                   "script-src 'unsafe-inline'; style-src 'unsafe-inline'"})
            if url.path == "/api/state":
                annotator = self._annotator((query.get("annotator") or [None])[0])
                if annotator is None:
                    return self._error(HTTPStatus.BAD_REQUEST, "annotator id: 1-64 letters, digits, . _ @ + -")
                return self._json(200, service.state(annotator))
            if url.path == "/api/export.csv":
                return self._send(200, service.export_csv().encode(), "text/csv; charset=utf-8",
                                  {"Content-Disposition": 'attachment; filename="annotations.csv"'})
            m = _IMAGE_RE.match(url.path)
            if m:
                try:
                    body = service.image(m.group(1), int(m.group(2)), m.group(3))
                except BenchError as exc:
                    return self._error(HTTPStatus.INTERNAL_SERVER_ERROR, str(exc))
                if body is not None:
                    return self._send(200, body, "image/png")
            return self._error(HTTPStatus.NOT_FOUND, "not found")

        def _post(self) -> None:
            url = urlsplit(self.path)
            if not self._authorised(parse_qs(url.query)):
                return self._error(HTTPStatus.FORBIDDEN, "missing or wrong token (use the URL printed at start)")
            if url.path != "/api/answer":
                return self._error(HTTPStatus.NOT_FOUND, "not found")
            length, refusal = self._content_length()
            if refusal is not None:  # refused from the headers alone: the body is never read
                self.close_connection = True
                return self._error(*refusal)
            try:
                body = json.loads(self.rfile.read(length) or b"{}")
                if not isinstance(body, dict):
                    raise ValueError("expected a JSON object")
            except ValueError as exc:
                return self._error(HTTPStatus.BAD_REQUEST, f"bad request: {exc}")
            except RecursionError:
                return self._error(HTTPStatus.BAD_REQUEST, "bad request: JSON nested too deeply")
            annotator = self._annotator(body.get("annotator"))
            if annotator is None:
                return self._error(HTTPStatus.BAD_REQUEST, "annotator id: 1-64 letters, digits, . _ @ + -")
            try:
                return self._json(200, service.answer(annotator, str(body.get("key")), str(body.get("answer"))))
            except LookupError as exc:
                return self._error(HTTPStatus.NOT_FOUND, str(exc))
            except ValueError as exc:
                return self._error(HTTPStatus.BAD_REQUEST, str(exc))
            except BenchError as exc:
                return self._error(HTTPStatus.SERVICE_UNAVAILABLE, str(exc))

        def do_PUT(self) -> None:  # noqa: N802
            self._error(HTTPStatus.METHOD_NOT_ALLOWED, "not allowed")

        do_DELETE = do_PUT

    return Handler


class AnnotationServer:
    """The HTTP server of one annotation session; `url` carries the token to open in a browser."""

    def __init__(self, catalogue: Catalogue, host: str = "127.0.0.1", port: int = 0,
                 token: str | None = None) -> None:
        self.token = token or secrets.token_urlsafe(24)
        self.service = AnnotationService(catalogue)
        try:
            self.httpd = ThreadingHTTPServer((host, port), make_handler(self.service, self.token))
        except OSError as exc:
            raise BenchError(f"cannot listen on {host}:{port} ({exc.strerror or exc}); choose another --port") from None
        self.httpd.daemon_threads = True
        self.host, self.port = host, int(self.httpd.server_address[1])
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/?token={self.token}"

    def serve_forever(self) -> None:
        self.httpd.serve_forever()

    def start(self) -> "AnnotationServer":
        """Serve in a background thread (tests, notebooks)."""
        self._thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)


def serve(results: Path, run_ids: list[str] | None, task: str, host: str, port: int) -> AnnotationServer:
    return AnnotationServer(Catalogue(results, run_ids, task), host, port)
