"""Where a download comes from (registry, Hugging Face repo, URL, local path) and its file plan.

A ``Source`` is what the user asked for; ``resolve`` turns it into a ``Plan``: the files to
fetch, each with its size and the digest to check it against (Hugging Face's LFS sha256 or
git blob id, the user's sha256 for a URL). Failures are ``DownloadError`` with an
``error_type`` (FT's DOWNLOAD_FAILED envelope).
"""

from __future__ import annotations

import fnmatch
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import unquote, urlsplit, urlunsplit

import httpx

from bridge.downloads.registry import REGISTRY
from bridge.errors import DownloadFailed, ModelNotFound, ValidationError
from bridge.urls import USERINFO_HINT, url_error, userinfo_misplaced

NETWORK_ERROR, NOT_FOUND, ACCESS_DENIED = "NETWORK_ERROR", "NOT_FOUND", "ACCESS_DENIED"
NETWORK_HINT = ("check this machine's network; behind a proxy, start the service with "
                "HTTPS_PROXY=http://PROXY:PORT")
HTTP_ERROR, CHECKSUM_MISMATCH, DISK_FULL = "HTTP_ERROR", "CHECKSUM_MISMATCH", "DISK_FULL"
INVALID_MODEL, IO_ERROR, INTERNAL = "INVALID_MODEL", "IO_ERROR", "INTERNAL_ERROR"
BLOCKED_ADDRESS, ALREADY_STORED = "BLOCKED_ADDRESS", "ALREADY_STORED"

KINDS = ("registry", "huggingface", "url", "path")
ARCHIVES = (".tar", ".tar.gz", ".tgz", ".zip")
# What a transformers model folder needs; other repo files (onnx/, gguf, README) are skipped.
DEFAULT_INCLUDE = ("*.json", "*.safetensors", "*.model", "*.txt", "*.jinja", "*.tiktoken")
_LEGACY_WEIGHTS = ("*.bin", "*.pt", "*.pth", "*.h5", "*.msgpack", "*.ot")
_RESERVED = {"manifest.json", "usage.json"}  # the store's own files
REPO_ID = re.compile(r"^[A-Za-z0-9][\w.-]{0,95}(/[A-Za-z0-9][\w.-]{0,95})?$")
QUANT = re.compile(r"^[A-Za-z0-9][\w.-]{0,31}$")
REVISION = re.compile(r"^[\w.-][\w./-]{0,254}$")


class DownloadError(DownloadFailed):
    """A download that failed for a named reason; ``error_type`` goes into the envelope."""

    def __init__(self, error_type: str, message: str, **details: Any) -> None:
        super().__init__(message, details={"error_type": error_type, **details})
        self.error_type = error_type
        if error_type == DISK_FULL:
            self.status = 507  # Insufficient Storage
        elif error_type == BLOCKED_ADDRESS:
            self.status = 403


@dataclass(frozen=True)
class Source:
    """What the user asked to download: kind, repo id / URL / path, and checks."""

    kind: str  # huggingface | url | path (a registry id becomes huggingface)
    location: str
    revision: str | None = None
    sha256: str | None = None
    include: tuple[str, ...] = ()
    meta: dict[str, str] = field(default_factory=dict)
    public_only: bool = False  # a non-admin's URL: only public addresses may be reached
    file: str | None = None  # a GGUF repo: the exact file to fetch
    quant: str | None = None  # a GGUF repo: the quantization to fetch (Q4_K_M, ...)

    def display(self) -> str:
        """The location without URL credentials or query (signed URLs carry secrets there)."""
        return display_url(self.location) if self.kind == "url" else self.location

    def as_json(self) -> dict[str, Any]:
        return {**asdict(self), "include": list(self.include)}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Source:
        return cls(**{**data, "include": tuple(data.get("include") or ())})


def display_url(url: str) -> str:
    """An http(s) URL without user info, query or fragment; anything else as it is."""
    if not url.lower().startswith(("http://", "https://")):
        return url
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc.rpartition("@")[2], parts.path, "", ""))


@dataclass
class RemoteFile:
    """One file of a plan: where it is, how big, and what its bytes must hash to."""

    name: str
    url: str  # http(s) URL, or a file path for local sources
    size: int | None = None
    sha256: str | None = None
    git_sha1: str | None = None  # Hugging Face's blob id for files not in LFS
    etag: str | None = None  # remembered for If-Range on resume
    etag_is_digest: bool = False  # the Hub's ETag is the sha256 (LFS) or the git blob id


@dataclass
class Plan:
    """The files of one download, the revision they come from, and the model's catalog entry."""

    files: list[RemoteFile]
    revision: str | None = None
    meta: dict[str, str] = field(default_factory=dict)
    archive: bool = False  # one archive to unpack into the model folder

    @property
    def total(self) -> int | None:
        sizes = [f.size for f in self.files]
        return None if any(s is None for s in sizes) else sum(s or 0 for s in sizes)

    def as_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Plan:
        files = [RemoteFile(**f) for f in data.get("files", [])]
        return cls(files, data.get("revision"), dict(data.get("meta") or {}),
                   bool(data.get("archive")))


def _field(name: str, message: str) -> ValidationError:
    return ValidationError(message, details={"field": name})


def requested_kind(body: dict[str, Any]) -> str:
    """The kind of source a download request names (registry when it names none)."""
    kind = body.get("source") or next(
        (k for k, f in (("huggingface", "repo_id"), ("url", "url"), ("path", "path")) if f in body),
        "registry",
    )
    kind = "huggingface" if kind == "hf" else kind
    if kind not in KINDS:
        raise _field("source", f"source must be one of {', '.join(KINDS)}")
    return str(kind)


def source_from_request(model_id: str, body: dict[str, Any], *,
                        public_only: bool = False) -> Source:  # fmt: skip
    """Check a download request's fields against the kind of source it names."""
    kind = requested_kind(body)
    own = {"registry": {"revision"},
           "huggingface": {"repo_id", "revision", "include", "file", "quantization"},
           "url": {"url", "sha256"}, "path": {"path", "sha256"}}[kind]
    fields = {"repo_id", "revision", "include", "url", "sha256", "path", "file", "quantization"}
    foreign = sorted(fields & set(body) - own)
    if foreign:
        raise _field(foreign[0], f"{', '.join(foreign)} does not apply to source {kind!r}")
    meta = {k: str(body[k]) for k in ("name", "family", "size") if body.get(k)}
    revision = body.get("revision")
    if revision is not None and (not REVISION.match(revision) or ".." in revision):
        raise _field("revision", "revision must be a branch, tag or commit id")
    if kind == "registry":
        entry = REGISTRY.get(model_id)
        if entry is None:
            raise ModelNotFound(f"Model {model_id!r} is not in the registry; name a repo_id, "
                                "url or path to download it from",
                                details={"model_id": model_id, "registry": sorted(REGISTRY)})
        meta = {"name": entry.name, "family": entry.family, "size": entry.size, **meta}
        return Source("huggingface", entry.repo_id, revision or entry.revision, meta=meta)
    if kind == "huggingface":
        repo, _, tag = str(body.get("repo_id") or "").partition(":")  # llama.cpp's repo:quant
        if not REPO_ID.match(repo) or ".." in repo:
            raise _field("repo_id", "repo_id must look like 'namespace/name' (or "
                         "'namespace/name:Q4_K_M' for a GGUF repo's quantization)")
        quant, file = body.get("quantization") or tag or None, body.get("file") or None
        if tag and body.get("quantization") and tag.upper() != str(quant).upper():
            raise _field("quantization", f"repo_id names {tag}, quantization {quant}")
        if sum(map(bool, (quant, file, body.get("include")))) > 1:
            raise _field("file", "name one of file, quantization (or repo_id's :tag), include")
        for name, value in (("quantization", quant), ("file", file)):
            if value and (not QUANT.match(value) if name == "quantization"
                          else not value.lower().endswith(".gguf") or ".." in value):
                raise _field(name, "quantization must be a tag like Q4_K_M; file a .gguf "
                             "file name in the repo")
        return Source(kind, repo, revision or "main", include=tuple(body.get("include") or ()),
                      meta=meta, file=file, quant=quant)
    if kind == "url":
        url = _checked_url(str(body.get("url") or ""))
        return Source(kind, url, sha256=_sha(body), meta=meta, public_only=public_only)
    try:
        path = Path(str(body.get("path") or "")).expanduser()
    except RuntimeError as exc:  # ~user that does not exist
        raise _field("path", f"path cannot be expanded: {exc}") from exc
    if "\0" in str(path) or not path.is_absolute():
        raise _field("path", "path must be an absolute path on the service's machine")
    return Source(kind, str(path), sha256=_sha(body), meta=meta)


def _checked_url(url: str) -> str:
    """``url`` if it is a well-formed http(s) URL with a host, else VALIDATION_ERROR."""
    message = "url must be an http:// or https:// URL with a host"
    if re.search(r"[\x00-\x20\x7f]", url):
        raise _field("url", f"{message} (no spaces or control characters)")
    if userinfo_misplaced(url):
        raise _field("url", f"{message}: {USERINFO_HINT}")
    try:
        parts = urlsplit(url)
        host, _port = parts.hostname, parts.port  # both raise on malformed hosts and ports
        httpx.URL(url)
    except (ValueError, httpx.InvalidURL) as exc:
        raise _field("url", f"{message}: {url_error(url, exc)}") from exc
    if parts.scheme.lower() not in ("http", "https") or not host:
        raise _field("url", message)
    return url


def _sha(body: dict[str, Any]) -> str | None:
    value = body.get("sha256")
    return str(value).lower() if value else None


def safe_name(name: str) -> str:
    """``name`` if it is a relative path that stays inside its folder, else INVALID_MODEL."""
    parts = PurePosixPath(name).parts
    if not parts or name.startswith("/") or any(p in ("..", ".") for p in parts) or "\\" in name:
        raise DownloadError(INVALID_MODEL, f"Refusing unsafe file name {name!r}")
    return name


def _is_archive(name: str) -> bool:
    return name.lower().endswith(ARCHIVES)




def select_files(names: list[str], include: tuple[str, ...]) -> list[str]:
    """Repo files worth fetching: top-level model files, or the user's patterns."""
    if include:
        chosen = [n for n in names if any(fnmatch.fnmatch(n, p) for p in include)]
    else:
        chosen = [n for n in names if "/" not in n
                  and any(fnmatch.fnmatch(n, p) for p in DEFAULT_INCLUDE)]
        if not any(n.endswith(".safetensors") for n in chosen):
            chosen += [n for n in names if "/" not in n
                       and any(fnmatch.fnmatch(n, p) for p in _LEGACY_WEIGHTS)]
    return [safe_name(n) for n in chosen if PurePosixPath(n).name not in _RESERVED]


def http_failure(status: int, what: str) -> DownloadError:
    """The error for an HTTP status that ends a download."""
    if status in (404, 410):
        return DownloadError(NOT_FOUND, f"{what} was not found (HTTP {status})", http_status=status)
    if status in (401, 403):
        return DownloadError(ACCESS_DENIED, f"{what}: access denied (HTTP {status})",
                             http_status=status)
    return DownloadError(HTTP_ERROR, f"{what}: the server answered HTTP {status}",
                         http_status=status)


def resolve_url(source: Source, client: httpx.Client) -> Plan:
    name = unquote(PurePosixPath(urlsplit(source.location).path).name) or "model.bin"
    name = re.sub(r"[^\w.+-]", "_", name).lstrip(".") or "model.bin"
    what = f"URL {source.display()}"
    try:
        head = client.head(source.location, headers={"Accept-Encoding": "identity"})
    except httpx.TimeoutException as exc:
        raise DownloadError(NETWORK_ERROR, f"{what} timed out") from exc
    except httpx.TransportError as exc:
        raise DownloadError(NETWORK_ERROR, f"{what} is unreachable ({type(exc).__name__}): "
                            f"{NETWORK_HINT}") from exc
    size: int | None = None
    etag: str | None = None
    if head.status_code < 400:
        length = head.headers.get("Content-Length")
        size = int(length) if length and length.isdigit() else None
        etag = head.headers.get("ETag")
    elif head.status_code not in (405, 501):  # some servers refuse HEAD: learn it from the GET
        raise http_failure(head.status_code, what)
    file = RemoteFile(name, source.location, size, source.sha256, etag=etag)
    meta = {"source": source.display(), **source.meta}
    return Plan([file], None, meta, archive=_is_archive(name))


def resolve_path(source: Source, models_root: Path) -> Plan:
    root = Path(source.location)
    try:
        exists = root.exists()
    except OSError as exc:  # a name too long, a component that is not a folder
        raise ValidationError(f"path cannot be read: {exc.strerror or exc}",
                              details={"field": "path"}) from exc
    if not exists:
        raise DownloadError(NOT_FOUND, f"Path {root} does not exist")
    real, store = root.resolve(), models_root.resolve()
    if real == store or store in real.parents or real in store.parents:
        raise ValidationError("path must not be inside (or contain) the model store",
                              details={"field": "path"})
    if root.is_file():
        file = RemoteFile(root.name, str(real), real.stat().st_size, source.sha256)
        meta = {"source": f"path:{real}", **source.meta}
        return Plan([file], None, meta, archive=_is_archive(root.name))
    if source.sha256:
        raise ValidationError("sha256 applies to a single file, not a folder",
                              details={"field": "sha256"})
    files = [RemoteFile(str(p.relative_to(real).as_posix()), str(p), p.stat().st_size)
             for p in sorted(real.rglob("*"))
             if p.is_file() and not p.is_symlink() and p.name not in _RESERVED
             and not any(part.startswith(".") for part in p.relative_to(real).parts)]
    if not files:
        raise DownloadError(INVALID_MODEL, f"Folder {real} holds no files")
    return Plan(files, None, {"source": f"path:{real}", **source.meta})
