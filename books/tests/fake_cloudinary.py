"""A small local stand-in for Cloudinary's Upload API, for the real `cloudinary` SDK.

It serves `POST /v1_1/<cloud>/image/upload` and `/image/destroy`, checks every request's
signature the way Cloudinary documents it (recomputed here, not with the SDK's code),
records what it was sent, and can be told to fail.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from email.message import Message
from email.parser import BytesParser
from email.policy import HTTP
from enum import StrEnum
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import filetype

# Cloudinary refuses signed requests whose timestamp is older than an hour.
MAX_TIMESTAMP_AGE_S = 3600
UNSIGNED_PARAMS = {"file", "api_key", "signature", "resource_type", "cloud_name"}


def expected_signature(params: dict[str, str], api_secret: str) -> str:
    """Cloudinary's request signature: SHA-1 of the sorted `key=value` pairs joined by `&`
    (an `&` inside a value escaped as `%26`), followed by the API secret."""
    pairs = sorted(
        f"{key}={value}".replace("&", "%26")
        for key, value in params.items()
        if key not in UNSIGNED_PARAMS and value != ""
    )
    return hashlib.sha1(("&".join(pairs) + api_secret).encode()).hexdigest()


class Failure(StrEnum):
    HTTP_500 = "http_500"  # a 500 with an HTML body, as from a broken proxy
    ERROR_JSON = "error_json"  # Cloudinary's own error document
    SLOW = "slow"  # answers only after the client has given up


@dataclass
class Upload:
    public_id: str
    data: bytes
    filename: str | None
    params: dict[str, str]
    secure_url: str


@dataclass
class FakeCloudinary:
    cloud_name: str = "bookstore-test"
    api_key: str = "123456789012345"
    api_secret: str = "fake-secret-for-tests"
    slow_s: float = 30.0
    failure: Failure | None = None
    uploads: list[Upload] = field(default_factory=list)
    destroyed: list[str] = field(default_factory=list)
    images: dict[str, bytes] = field(default_factory=dict)
    rejected_signatures: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _release: threading.Event = field(default_factory=threading.Event)
    # Set while a SLOW call holds its answer back.
    stalling: threading.Event = field(default_factory=threading.Event)
    _server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        assert self._server is not None, "the fake is not running"
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def cloudinary_url(self, *, api_secret: str | None = None) -> str:
        secret = self.api_secret if api_secret is None else api_secret
        return f"cloudinary://{self.api_key}:{secret}@{self.cloud_name}?upload_prefix={self.url}"

    def reset(self) -> None:
        self._release.set()
        with self._lock:
            self.failure = None
            self.uploads.clear()
            self.destroyed.clear()
            self.images.clear()
            self.rejected_signatures = 0
        self._release = threading.Event()
        self.stalling = threading.Event()

    @contextmanager
    def running(self) -> Iterator[FakeCloudinary]:
        fake = self

        class Handler(_Handler):
            cloudinary = fake

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        thread.start()
        try:
            yield self
        finally:
            self._release.set()
            self._server.shutdown()
            self._server.server_close()
            thread.join()

    def handle(
        self, action: str, params: dict[str, str], file: tuple[str | None, bytes] | None
    ) -> tuple[int, dict[str, Any] | None]:
        """Status and JSON document (None: an HTML error page) for one API call."""
        if self.failure is Failure.SLOW:
            self.stalling.set()
            self._release.wait(self.slow_s)
        if params.get("api_key") != self.api_key:
            return 401, _error(f"Unknown API key {params.get('api_key')}")
        signature = expected_signature(params, self.api_secret)
        if not hmac.compare_digest(params.get("signature", ""), signature):
            with self._lock:
                self.rejected_signatures += 1
            return 401, _error("Invalid Signature")
        if abs(time.time() - int(params.get("timestamp", "0"))) > MAX_TIMESTAMP_AGE_S:
            return 400, _error("Stale request")
        if self.failure is Failure.HTTP_500:
            return 500, None
        if self.failure is Failure.ERROR_JSON:
            return 420, _error("Rate Limit Exceeded")
        if action == "upload":
            return self._upload(params, file)
        return self._destroy(params)

    def _upload(
        self, params: dict[str, str], file: tuple[str | None, bytes] | None
    ) -> tuple[int, dict[str, Any]]:
        if file is None or not file[1]:
            return 400, _error("Missing required parameter - file")
        filename, data = file
        kind = filetype.image_match(data)
        if kind is None:
            return 400, _error("Invalid image file")
        public_id = params.get("public_id") or hashlib.sha1(data).hexdigest()[:20]
        if public_id in self.images and params.get("overwrite") in ("0", "false"):
            return 400, _error(f"Resource {public_id} already exists")
        version = int(time.time())
        path = f"{self.cloud_name}/image/upload/v{version}/{public_id}.{kind.extension}"
        with self._lock:
            self.images[public_id] = data
            self.uploads.append(
                Upload(public_id, data, filename, params, f"https://res.cloudinary.com/{path}")
            )
        return 200, {
            "public_id": public_id,
            "version": version,
            "signature": hashlib.sha1(data).hexdigest(),
            "format": kind.extension,
            "resource_type": "image",
            "bytes": len(data),
            "type": "upload",
            "url": f"http://res.cloudinary.com/{path}",
            "secure_url": f"https://res.cloudinary.com/{path}",
            "original_filename": (filename or "file").rsplit(".", 1)[0],
        }

    def _destroy(self, params: dict[str, str]) -> tuple[int, dict[str, Any]]:
        public_id = params.get("public_id", "")
        with self._lock:
            found = self.images.pop(public_id, None) is not None
            if found:
                self.destroyed.append(public_id)
        return 200, {"result": "ok" if found else "not found"}


def _error(message: str) -> dict[str, Any]:
    return {"error": {"message": message}}


class _Handler(BaseHTTPRequestHandler):
    cloudinary: FakeCloudinary
    protocol_version = "HTTP/1.1"

    def do_POST(self) -> None:
        prefix = f"/v1_1/{self.cloudinary.cloud_name}/image/"
        action = self.path.removeprefix(prefix)
        if not self.path.startswith(prefix) or action not in ("upload", "destroy"):
            self._reply(404, _error(f"No route {self.path}"))
            return
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        params, file = _parse_multipart(self.headers.get("Content-Type", ""), body)
        self._reply(*self.cloudinary.handle(action, params, file))

    def _reply(self, status: int, document: dict[str, Any] | None) -> None:
        if document is None:
            payload, content_type = b"<html>Internal Server Error</html>", "text/html"
        else:
            payload, content_type = json.dumps(document).encode(), "application/json"
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: pytest shows failures, not access logs."""


def _parse_multipart(
    content_type: str, body: bytes
) -> tuple[dict[str, str], tuple[str | None, bytes] | None]:
    """Form fields (`k[]` lists joined by commas, as they are signed) and the file part."""
    message = BytesParser(policy=HTTP).parsebytes(
        f"Content-Type: {content_type}\r\n\r\n".encode() + body
    )
    params: dict[str, str] = {}
    file = None
    for part in message.iter_parts():
        assert isinstance(part, Message)
        name = part.get_param("name", header="content-disposition")
        payload = part.get_payload(decode=True)
        assert isinstance(name, str)
        assert isinstance(payload, bytes)
        if name == "file":
            file = (part.get_filename(), payload)
        elif name.endswith("[]"):
            key = name.removesuffix("[]")
            params[key] = f"{params[key]},{payload.decode()}" if key in params else payload.decode()
        else:
            params[name] = payload.decode()
    return params, file
