"""A Hugging Face Hub stand-in on 127.0.0.1: the shapes huggingface_hub reads, and plain files.

- ``GET /api/models/{repo}[/revision/{rev}][?blobs=true]``: model_info (sha, siblings with
  size, blobId and lfs{sha256, size, pointerSize}); unknown repos and revisions answer 404
  with ``X-Error-Code: RepoNotFound`` / ``RevisionNotFound`` as the Hub does.
- ``HEAD/GET /{repo}/resolve/{rev}/{file}``: ``X-Repo-Commit`` and ``ETag`` (the git blob id);
  LFS files redirect (302) to ``/cdn/...`` with ``X-Linked-Etag`` (sha256) and
  ``X-Linked-Size``, like the Hub's CDN hop.
- ``HEAD/GET /files/{name}``: plain URLs.
Bodies honour ``Range`` and ``If-Range``. Knobs, keyed by file name: ``missing`` (404),
``hang`` (headers, then nothing), ``cuts`` (close the connection after N bytes, once per
entry), ``corrupt`` (same length, other bytes), and ``delay`` seconds per 64 KiB chunk.
Every request is recorded (path, query, Authorization, Range, If-Range) in ``requests``.
"""

from __future__ import annotations

import hashlib
import json
import re
import secrets
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import pytest

CHUNK = 1 << 16


@dataclass
class Blob:
    """One served file: from memory or from disk (the real model is 500 MB)."""

    data: bytes | Path
    lfs: bool = False
    size: int = 0
    sha256: str = ""
    git_sha1: str = ""

    def __post_init__(self) -> None:
        self.size = len(self.data) if isinstance(self.data, bytes) else self.data.stat().st_size
        sha256, git = hashlib.sha256(), hashlib.sha1(f"blob {self.size}\0".encode())
        for chunk in self.chunks(0, self.size):
            sha256.update(chunk)
            if not self.lfs:
                git.update(chunk)
        self.sha256, self.git_sha1 = sha256.hexdigest(), git.hexdigest()

    def chunks(self, start: int, end: int) -> Any:
        if isinstance(self.data, bytes):
            for at in range(start, end, CHUNK):
                yield self.data[at:min(end, at + CHUNK)]
            return
        with self.data.open("rb") as handle:
            handle.seek(start)
            left = end - start
            while left > 0:
                chunk = handle.read(min(CHUNK, left))
                if not chunk:
                    return
                left -= len(chunk)
                yield chunk


@dataclass
class Repo:
    commit: str
    files: dict[str, Blob]


@dataclass
class HubStandin:
    repos: dict[str, Repo] = field(default_factory=dict)
    files: dict[str, Blob] = field(default_factory=dict)
    missing: set[str] = field(default_factory=set)
    hang: set[str] = field(default_factory=set)
    cuts: dict[str, list[int]] = field(default_factory=dict)
    corrupt: set[str] = field(default_factory=set)
    delay: float = 0.0
    requests: list[dict[str, Any]] = field(default_factory=list)
    release: threading.Event = field(default_factory=threading.Event)

    def __post_init__(self) -> None:
        standin = self

        class Handler(_Handler):
            hub = standin

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> HubStandin:
        self.thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self.release.set()
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)

    def add_repo(self, repo_id: str, files: dict[str, bytes | Path]) -> str:
        """Publish a repo; .safetensors and .gguf files are LFS files. Returns the commit."""
        commit = secrets.token_hex(20)
        blobs = {n: Blob(d, lfs=n.endswith((".safetensors", ".gguf"))) for n, d in files.items()}
        self.repos[repo_id] = Repo(commit, blobs)
        return commit

    def add_file(self, name: str, data: bytes | Path) -> str:
        """Serve ``data`` at a plain URL; returns the URL."""
        self.files[name] = Blob(data)
        return f"{self.url}/files/{name}"

    def ranges(self, name: str) -> list[str | None]:
        """The Range headers of the GETs that asked for ``name``'s bytes."""
        return [r["range"] for r in self.requests
                if r["method"] == "GET" and r["path"].rsplit("/", 1)[-1] == name]


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    hub: HubStandin

    def log_message(self, *_args: Any) -> None:
        pass

    def handle(self) -> None:
        try:
            super().handle()
        except (ConnectionError, TimeoutError):  # the client went away (cancel, timeout)
            pass

    def do_HEAD(self) -> None:
        self._route(body=False)

    def do_GET(self) -> None:
        self._route(body=True)

    def _route(self, body: bool) -> None:
        path = unquote(urlsplit(self.path).path)
        self.hub.requests.append({"method": self.command, "path": path,
                                  "query": urlsplit(self.path).query,
                                  "authorization": self.headers.get("Authorization"),
                                  "range": self.headers.get("Range"),
                                  "if_range": self.headers.get("If-Range")})
        if path.rsplit("/", 1)[-1] in self.hub.missing:
            return self._json(404, {"error": "Entry not found"}, {"X-Error-Code": "EntryNotFound"})
        if match := re.fullmatch(r"/api/models/([^/]+/[^/]+)(?:/revision/([^/]+))?", path):
            return self._info(match.group(1), match.group(2) or "main")
        if match := re.fullmatch(r"/([^/]+/[^/]+)/resolve/([^/]+)/(.+)", path):
            return self._resolve(match.group(1), match.group(2), match.group(3), body)
        if match := re.fullmatch(r"/cdn/([^/]+/[^/]+)/([0-9a-f]{64})/(.+)", path):
            repo = self.hub.repos.get(match.group(1))
            blob = repo.files.get(match.group(3)) if repo else None
            if blob is not None and blob.sha256 == match.group(2):
                return self._send(blob, match.group(3), body, {})
        if match := re.fullmatch(r"/files/(.+)", path):
            if (blob := self.hub.files.get(match.group(1))) is not None:
                return self._send(blob, match.group(1), body, {})
        return self._json(404, {"error": "Not found"}, {})

    def _repo(self, repo_id: str, revision: str) -> Repo | None:
        repo = self.hub.repos.get(repo_id)
        if repo is None:
            self._json(404, {"error": "Repository not found"}, {"X-Error-Code": "RepoNotFound"})
        elif revision not in ("main", repo.commit):
            self._json(404, {"error": f"Invalid rev id: {revision}"},
                       {"X-Error-Code": "RevisionNotFound"})
        else:
            return repo
        return None

    def _info(self, repo_id: str, revision: str) -> None:
        repo = self._repo(repo_id, revision)
        if repo is None:
            return
        blobs = "blobs=true" in urlsplit(self.path).query.lower()
        siblings = []
        for name, blob in sorted(repo.files.items()):
            sibling: dict[str, Any] = {"rfilename": name}
            if blobs:
                sibling.update(size=blob.size, blobId=blob.git_sha1 if not blob.lfs else "0" * 40)
                if blob.lfs:
                    sibling["lfs"] = {"sha256": blob.sha256, "size": blob.size,
                                      "pointerSize": 134}
            siblings.append(sibling)
        self._json(200, {"_id": repo.commit[:24], "id": repo_id, "modelId": repo_id,
                         "sha": repo.commit, "private": False, "disabled": False,
                         "gated": False, "library_name": "transformers", "tags": [],
                         "lastModified": "2025-01-01T00:00:00.000Z", "siblings": siblings}, {})

    def _resolve(self, repo_id: str, revision: str, name: str, body: bool) -> None:
        repo = self._repo(repo_id, revision)
        if repo is None:
            return
        blob = repo.files.get(name)
        if blob is None:
            return self._json(404, {"error": "Entry not found"}, {"X-Error-Code": "EntryNotFound"})
        headers = {"X-Repo-Commit": repo.commit}
        if blob.lfs:
            self.send_response(302)
            for key, value in {**headers, "Location": f"/cdn/{repo_id}/{blob.sha256}/{name}",
                               "X-Linked-Etag": f'"{blob.sha256}"', "X-Linked-Size": str(blob.size),
                               "ETag": f'"{blob.git_sha1}"', "Content-Length": "0"}.items():
                self.send_header(key, value)
            self.end_headers()
            return None
        return self._send(blob, name, body, headers)

    def _send(self, blob: Blob, name: str, body: bool, headers: dict[str, str]) -> None:
        etag = f'"{blob.sha256 if blob.lfs else blob.git_sha1}"'
        start, end, status = 0, blob.size, 200
        wanted = re.fullmatch(r"bytes=(\d+)-(\d*)", self.headers.get("Range", ""))
        if_range = self.headers.get("If-Range")
        if wanted and (if_range is None or if_range == etag):
            start = int(wanted.group(1))
            end = int(wanted.group(2)) + 1 if wanted.group(2) else blob.size
            if start >= blob.size:
                return self._json(416, {"error": "Range not satisfiable"},
                                  {"Content-Range": f"bytes */{blob.size}"})
            status = 206
        self.send_response(status)
        for key, value in {**headers, "ETag": etag, "Accept-Ranges": "bytes",
                           "Content-Length": str(end - start)}.items():
            self.send_header(key, value)
        if status == 206:
            self.send_header("Content-Range", f"bytes {start}-{end - 1}/{blob.size}")
        self.end_headers()
        if not body:
            return
        cuts = self.hub.cuts.get(name)
        cut_at = start + cuts.pop(0) if cuts else None
        if name in self.hub.hang:
            self.wfile.write(next(blob.chunks(start, end), b"")[:1024])
            self.wfile.flush()
            self.hub.release.wait(30)
            self.close_connection = True
            return
        sent = start
        for chunk in blob.chunks(start, end):
            if cut_at is not None and sent + len(chunk) > cut_at:
                self.wfile.write(chunk[:cut_at - sent])
                self.wfile.flush()
                self.close_connection = True  # Content-Length promised more: a cut transfer
                return
            if name in self.hub.corrupt:
                chunk = bytes(b ^ 0xFF for b in chunk[:1]) + chunk[1:]
            self.wfile.write(chunk)
            sent += len(chunk)
            if self.hub.delay:
                self.hub.release.wait(self.hub.delay)

    def _json(self, status: int, data: Any, headers: dict[str, str]) -> None:
        raw = json.dumps(data).encode()
        self.send_response(status)
        for key, value in {**headers, "Content-Type": "application/json",
                           "Content-Length": str(len(raw))}.items():
            self.send_header(key, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(raw)


@pytest.fixture
def hub() -> Iterator[HubStandin]:
    """A Hub stand-in on a free loopback port for one test (a plugin fixture, see conftest)."""
    with HubStandin() as standin:
        yield standin


# A GGUF repo as quantizers publish them: the real default model's file (Q4_1) and a small whole
# GGUF labelled Q8_0, so a pull can choose between two quantizations.
GGUF_REPO = "someone/SmolLM2-135M-Instruct-GGUF"
GGUF_REAL = "SmolLM2-135M-Instruct.Q4_1.gguf"
GGUF_SMALL = "SmolLM2-135M-Instruct.Q8_0.gguf"


def small_gguf(path: Path) -> Path:
    """A whole GGUF (header, metadata, one tensor) written with llama.cpp's own writer."""
    import numpy as np
    from gguf import GGUFWriter, LlamaFileType

    writer = GGUFWriter(str(path), "llama")
    writer.add_file_type(LlamaFileType.MOSTLY_Q8_0)
    writer.add_size_label("135M")
    writer.add_tensor("token_embd.weight", np.zeros((4, 8), dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


@pytest.fixture
def gguf_repo(hub: HubStandin, tmp_path: Path) -> HubStandin:
    """``hub`` serving GGUF_REPO (GGUF_REAL, GGUF_SMALL and a README)."""
    from bridge.models.convert import find_default_gguf

    hub.add_repo(GGUF_REPO, {GGUF_REAL: find_default_gguf(),
                             GGUF_SMALL: small_gguf(tmp_path / GGUF_SMALL),
                             "README.md": b"# quantizations of SmolLM2"})
    return hub
