"""A Hugging Face hub on 127.0.0.1 for tests: the endpoints huggingface_hub's downloads call, over a few files.

- HEAD / GET /{repo}/resolve/{revision}/{path}: the file, with X-Repo-Commit, ETag and Content-Length (what
  `hf_hub_download` reads); 404 with X-Error-Code EntryNotFound / RevisionNotFound / RepoNotFound otherwise.
- GET /api/models/{repo}/revision/{revision}: the repository's info with its commit (`sha`) and `siblings`.
- GET /api/models/{repo}/tree/{revision}[/{path}]: the file list `snapshot_download` fetches (one page).

`revision` is the commit or "main". Every request is recorded in `requests` as (method, path).
"""
from __future__ import annotations

import hashlib
import json
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import unquote, urlsplit


@dataclass
class HubRepo:
    commit: str
    files: dict[str, bytes]


@dataclass
class FakeHub:
    repos: dict[str, HubRepo] = field(default_factory=dict)
    requests: list[tuple[str, str]] = field(default_factory=list)

    def __post_init__(self):
        hub = self

        class Handler(BaseHTTPRequestHandler):
            def do_HEAD(self):
                hub.answer(self, body=False)

            def do_GET(self):
                hub.answer(self, body=True)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def __enter__(self) -> "FakeHub":
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()

    def answer(self, request: BaseHTTPRequestHandler, body: bool) -> None:
        path = unquote(urlsplit(request.path).path)
        self.requests.append((request.command, path))
        if path.startswith("/api/models/"):
            return self.api(request, path.removeprefix("/api/models/"))
        parts = path.strip("/").split("/")
        if len(parts) < 5 or parts[2] != "resolve":
            return self.reply(request, 404, {"X-Error-Code": "RepoNotFound"})
        repo, revision, name = "/".join(parts[:2]), parts[3], "/".join(parts[4:])
        found = self.lookup(request, repo, revision)
        if found is None:
            return
        if name not in found.files:
            return self.reply(request, 404, {"X-Error-Code": "EntryNotFound", "X-Repo-Commit": found.commit})
        data = found.files[name]
        headers = {"X-Repo-Commit": found.commit, "ETag": f'"{hashlib.sha256(data).hexdigest()}"',
                   "Content-Length": str(len(data)), "Content-Type": "application/octet-stream"}
        self.reply(request, 200, headers, data if body else b"", length_set=True)

    def api(self, request: BaseHTTPRequestHandler, rest: str) -> None:
        parts = rest.split("/")
        repo = "/".join(parts[:2])
        kind = parts[2] if len(parts) > 2 else ""
        revision = parts[3] if len(parts) > 3 else "main"
        found = self.lookup(request, repo, revision)
        if found is None:
            return
        if kind == "revision":
            payload = {"id": repo, "sha": found.commit, "siblings": [{"rfilename": name} for name in found.files]}
        elif kind == "tree":
            payload = [{"type": "file", "path": name, "size": len(data),
                        "oid": hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()}
                       for name, data in found.files.items()]
        else:
            return self.reply(request, 404, {"X-Error-Code": "RepoNotFound"})
        self.reply(request, 200, {"Content-Type": "application/json"}, json.dumps(payload).encode())

    def lookup(self, request: BaseHTTPRequestHandler, repo: str, revision: str) -> HubRepo | None:
        found = self.repos.get(repo)
        if found is None:
            self.reply(request, 404, {"X-Error-Code": "RepoNotFound"})
            return None
        if revision not in (found.commit, "main"):
            self.reply(request, 404, {"X-Error-Code": "RevisionNotFound"})
            return None
        return found

    @staticmethod
    def reply(request: BaseHTTPRequestHandler, status: int, headers: dict[str, str], data: bytes = b"",
              length_set: bool = False) -> None:
        request.send_response(status)
        for key, value in headers.items():
            request.send_header(key, value)
        if not length_set:
            request.send_header("Content-Length", str(len(data)))
        request.end_headers()
        if data:
            request.wfile.write(data)


def closed_port_endpoint() -> str:
    """An http endpoint on 127.0.0.1 where nothing listens (a hub that is down)."""
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"http://127.0.0.1:{port}"
