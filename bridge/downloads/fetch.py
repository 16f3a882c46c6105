"""One file's bytes into the partial folder: HTTP with Range resume, local copies, digest checks.

``tick(bytes_so_far)`` is called after every chunk; it raises ``Stopped`` to end a transfer
(cancel or shutdown), leaving the partial file as it is.
"""

from __future__ import annotations

import errno
import hashlib
import json
import logging
import math
import os
import re
import tarfile
import time
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx

from bridge.downloads.ggufs import folder_facts
from bridge.downloads.sources import (
    ACCESS_DENIED,
    CHECKSUM_MISMATCH,
    DISK_FULL,
    INVALID_MODEL,
    IO_ERROR,
    NETWORK_ERROR,
    NETWORK_HINT,
    NOT_FOUND,
    DownloadError,
    RemoteFile,
    http_failure,
    safe_name,
)
from bridge.models.store import GENERIC_PARAMETERS, sha256_file
from bridge.params import DEFAULTABLE

log = logging.getLogger("compute_bridge.downloads")
CHUNK = 1 << 16
Tick = Callable[[int], None]


class Stopped(Exception):
    """A transfer asked to stop: ``reason`` is "cancel" or "shutdown"."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def disk_error(exc: OSError, name: str) -> DownloadError:
    """ENOSPC and quota errors are DISK_FULL; other file-system errors IO_ERROR."""
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return DownloadError(DISK_FULL, f"No space left on the device while writing {name}")
    return DownloadError(IO_ERROR, f"Cannot write {name}: {exc.strerror or exc}")


def _size(path: Path) -> int:
    return path.stat().st_size if path.exists() else 0


def fetch_http(file: RemoteFile, dest: Path, *, client: httpx.Client, headers: dict[str, str],
               tick: Tick, retries: int) -> None:  # fmt: skip
    """Download ``file`` into ``dest``, resuming from its current size; retry network errors."""
    for attempt in range(retries + 1):
        try:
            _http_once(file, dest, client, headers, tick)
            return
        except DownloadError as exc:
            if exc.error_type != NETWORK_ERROR or attempt == retries:
                raise
            log.info("download of %s: %s; retrying from byte %d", file.name, exc.message,
                     _size(dest))
            time.sleep(min(2.0, 0.2 * 2**attempt))
            tick(_size(dest))  # honours a cancel that came during the pause


def _range_start(header: str | None) -> int | None:
    match = re.match(r"bytes (\d+)-", header or "")
    return int(match.group(1)) if match else None


def _http_once(file: RemoteFile, dest: Path, client: httpx.Client, headers: dict[str, str],
               tick: Tick) -> None:  # fmt: skip
    have = _size(dest)
    if file.size is not None and have > file.size:
        dest.unlink()
        have = 0
    if file.size is not None and have == file.size and dest.exists():
        tick(have)
        return
    sent = dict(headers)
    if have:
        sent["Range"] = f"bytes={have}-"
        if file.etag and not file.etag.startswith("W/"):
            sent["If-Range"] = file.etag  # a changed file comes back whole (200), not spliced
    host = urlsplit(file.url).hostname
    try:
        with client.stream("GET", file.url, headers=sent) as response:
            if response.status_code == 416 or (
                response.status_code == 206 and _range_start(response.headers.get("Content-Range"))
                != have
            ):
                dest.unlink()
                raise DownloadError(NETWORK_ERROR, "the server refused to resume; starting over")
            if response.status_code >= 400:
                raise http_failure(response.status_code, f"{file.name} at {host}")
            if response.status_code != 206:
                have = 0  # the whole file (no Range support, or it changed since)
            linked = [r.headers.get("X-Linked-Etag") for r in response.history]
            file.etag = next((e for e in linked if e), None) or response.headers.get("ETag")
            with dest.open("ab" if have else "wb") as out:
                for chunk in response.iter_raw(CHUNK):
                    out.write(chunk)
                    have += len(chunk)
                    tick(have)
                out.flush()
                os.fsync(out.fileno())
    except httpx.TimeoutException as exc:
        raise DownloadError(NETWORK_ERROR, f"{file.name} at {host}: timed out") from exc
    except httpx.TransportError as exc:
        raise DownloadError(NETWORK_ERROR, f"{file.name} at {host}: connection failed "
                            f"({type(exc).__name__}): {NETWORK_HINT}") from exc
    except OSError as exc:
        raise disk_error(exc, file.name) from exc
    if file.size is not None and have != file.size:
        raise DownloadError(NETWORK_ERROR, f"{file.name}: got {have} of {file.size} bytes")


def copy_local(file: RemoteFile, dest: Path, *, tick: Tick) -> None:
    """Copy a local file into ``dest`` in chunks, resuming from its current size."""
    src = Path(file.url)
    have = _size(dest)
    try:
        if have > src.stat().st_size:
            have = 0
        with src.open("rb") as inp, dest.open("ab" if have else "wb") as out:
            inp.seek(have)
            while chunk := inp.read(1 << 20):
                out.write(chunk)
                have += len(chunk)
                tick(have)
            out.flush()
            os.fsync(out.fileno())
    except FileNotFoundError as exc:
        raise DownloadError(NOT_FOUND, f"{src} no longer exists") from exc
    except PermissionError as exc:
        raise DownloadError(ACCESS_DENIED, f"{src} is not readable by the service") from exc
    except OSError as exc:
        raise disk_error(exc, file.name) from exc


def git_blob_sha1(path: Path) -> str:
    """The git object id of a file (what the Hub reports for files outside LFS)."""
    digest = hashlib.sha1(f"blob {path.stat().st_size}\0".encode(), usedforsecurity=False)
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def verify(file: RemoteFile, path: Path) -> None:
    """Size and digest against the plan (or the Hub's ETag); CHECKSUM_MISMATCH otherwise."""
    size = path.stat().st_size
    if file.size is not None and size != file.size:
        raise DownloadError(CHECKSUM_MISMATCH, f"{file.name}: {size} bytes, expected "
                            f"{file.size}", file=file.name)
    sha256, git = file.sha256, file.git_sha1
    tag = (file.etag or "").removeprefix("W/").strip('"').lower()
    if not (sha256 or git) and file.etag_is_digest and re.fullmatch(r"[0-9a-f]{40,64}", tag):
        sha256, git = (tag, None) if len(tag) == 64 else (None, tag)
    if sha256:
        kind, expected, actual = "sha256", sha256.lower(), sha256_file(path)
    elif git:
        kind, expected, actual = "git blob id", git.lower(), git_blob_sha1(path)
    else:
        return
    if actual != expected:
        raise DownloadError(CHECKSUM_MISMATCH, f"{file.name}: {kind} {actual[:16]}… does not "
                            f"match the expected {expected[:16]}…", file=file.name,
                            expected=expected, actual=actual)


def unpack(archive: Path, dest: Path) -> None:
    """Extract a .tar(.gz)/.zip safely into ``dest``; one top folder is flattened away."""
    dest.mkdir(parents=True, exist_ok=True)
    try:
        if archive.name.lower().endswith(".zip"):
            with zipfile.ZipFile(archive) as bundle:
                for name in bundle.namelist():
                    safe_name(name.rstrip("/"))
                bundle.extractall(dest)
        else:
            with tarfile.open(archive) as bundle:
                bundle.extractall(dest, filter="data")  # refuses absolute paths, .., odd links
    except (tarfile.TarError, zipfile.BadZipFile, EOFError) as exc:
        raise DownloadError(INVALID_MODEL, f"{archive.name} is not a valid archive: {exc}") from exc
    except OSError as exc:
        raise disk_error(exc, archive.name) from exc
    entries = list(dest.iterdir())
    if len(entries) == 1 and entries[0].is_dir():
        inner = entries[0].rename(dest / ".top-folder")  # its children may share its name
        for child in inner.iterdir():
            os.replace(child, dest / child.name)
        inner.rmdir()
    if not any(p.is_file() for p in dest.rglob("*")):
        raise DownloadError(INVALID_MODEL, f"{archive.name} holds no files")


def _count(n: int) -> str:
    for unit, scale in (("B", 1e9), ("M", 1e6), ("K", 1e3)):
        if n >= scale:
            return f"{n / scale:.3g}{unit}"
    return str(n)


def model_facts(folder: Path) -> dict[str, Any]:
    """Catalog facts read from the files: family (config's model_type), size (parameters);
    a GGUF's from its metadata, once it is read whole (INVALID_MODEL when it is not)."""
    gguf = folder_facts(folder)
    if gguf:
        return gguf
    facts: dict[str, Any] = {}
    try:
        config = json.loads((folder / "config.json").read_text())
        if isinstance(config, dict) and isinstance(config.get("model_type"), str):
            facts["family"] = config["model_type"]
    except (OSError, ValueError):
        pass
    count = 0
    for path in sorted(folder.glob("*.safetensors")):
        try:  # a safetensors file starts with an 8-byte length and a JSON header of shapes
            with path.open("rb") as handle:
                length = int.from_bytes(handle.read(8), "little")
                header = json.loads(handle.read(length)) if length < 100 << 20 else {}
        except (OSError, ValueError):
            continue
        if isinstance(header, dict):
            count += sum(math.prod(e.get("shape") or [0]) for k, e in header.items()
                         if k != "__metadata__" and isinstance(e, dict))
    if count:
        facts["size"] = _count(count)
    defaults = generation_defaults(folder)
    if defaults:
        facts["parameters"] = {**GENERIC_PARAMETERS, **defaults}
    return facts


def generation_defaults(folder: Path) -> dict[str, float | int]:
    """The sampling defaults a transformers model ships in generation_config.json (Qwen2.5:
    temperature 0.7, top_p 0.8, top_k 20, repetition_penalty 1.05); {} when none. Sampling
    values count only where the file samples (``do_sample``), as in transformers."""
    try:
        config = json.loads((folder / "generation_config.json").read_text())
    except (OSError, ValueError):
        return {}
    if not isinstance(config, dict):
        return {}
    names = DEFAULTABLE if config.get("do_sample") else ("repetition_penalty",)
    return {n: config[n] for n in names
            if isinstance(config.get(n), int | float) and not isinstance(config[n], bool)}
