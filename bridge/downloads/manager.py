"""Download jobs: resolve a source, fetch into a hidden partial folder, verify, register.

Each job runs in its own thread. Partial files live in ``<models>/.partial/<job id>/``: on
the store's file system but outside its catalog, so ``ModelStore.register`` moves a complete,
verified folder in with one rename and the store never shows half a model. A cancelled or
failed job deletes its partial folder; a job stopped by shutdown keeps it, and ``resume``
continues it after a restart with HTTP ``Range`` requests. Progress reaches ``save`` (the
database, WebSocket pushes) on every status change and at most every ``progress_every`` s.
"""

from __future__ import annotations

import logging
import shutil
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import httpx

from bridge.downloads import sources
from bridge.downloads.fetch import Stopped, copy_local, fetch_http, model_facts, unpack, verify
from bridge.downloads.guard import public_client
from bridge.downloads.hub import resolve_repo
from bridge.downloads.jobs import Job, Meter
from bridge.downloads.sources import (
    ALREADY_STORED,
    DISK_FULL,
    INTERNAL,
    INVALID_MODEL,
    DownloadError,
    Plan,
    Source,
    display_url,
)
from bridge.errors import BridgeError, Conflict, ModelNotFound
from bridge.models.store import ModelStore

log = logging.getLogger("compute_bridge.downloads")
RESERVE_BYTES = 64 << 20  # keep this much free beyond the download itself


def is_stored(store: ModelStore, model_id: str) -> bool:
    """True when ``model_id`` has files in the store (a download must never replace them)."""
    try:
        return store.get(model_id).path is not None
    except ModelNotFound:
        return False


class _HideUrlSecrets(logging.Filter):
    """httpx logs each request's full URL at INFO: keep signed-URL secrets out of the log."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple) and any(isinstance(a, httpx.URL) for a in record.args):
            record.args = tuple(display_url(str(a)) if isinstance(a, httpx.URL) else a
                                for a in record.args)
        return True


@dataclass
class _Running:
    job: Job
    cancel: threading.Event = field(default_factory=threading.Event)
    thread: threading.Thread | None = None


class Downloader:
    """Starts, tracks, cancels and resumes download jobs into one ModelStore."""

    def __init__(
        self, store: ModelStore, save: Callable[[Job], None], *, hf_endpoint: str | None = None,
        timeout: float = 30.0, retries: int = 2, stop: threading.Event | None = None,
        progress_every: float = 0.5,
    ) -> None:  # fmt: skip
        self.store, self.save = store, save
        self.hf_endpoint, self.timeout, self.retries = hf_endpoint, timeout, retries
        self.stop = stop or threading.Event()
        self.progress_every = progress_every
        self._running: dict[str, _Running] = {}
        self._lock = threading.Lock()
        httpx_log = logging.getLogger("httpx")
        if not any(isinstance(f, _HideUrlSecrets) for f in httpx_log.filters):
            httpx_log.addFilter(_HideUrlSecrets())

    @property
    def partial_root(self) -> Path:
        return self.store.root / ".partial"

    def partial_dir(self, job_id: str) -> Path:
        return self.partial_root / job_id

    def running(self, model_id: str) -> Job | None:
        """The job in flight in this process for ``model_id``."""
        with self._lock:
            return next((r.job for r in self._running.values() if r.job.model_id == model_id),
                        None)

    def running_ids(self) -> set[str]:
        """The ids of the jobs in flight in this process."""
        with self._lock:
            return set(self._running)

    def submit(self, job: Job) -> None:
        """Resolve and check space now (errors reach the caller), then fetch in a thread."""
        with self._lock:
            if any(r.job.model_id == job.model_id for r in self._running.values()):
                raise Conflict(f"Model {job.model_id!r} is already downloading",
                               details={"model_id": job.model_id})
            entry = self._running[job.id] = _Running(job)
        try:
            with self._client(job.source) as client:
                self._plan(job, client)
        except DownloadError as exc:
            self._end(job, "failed", exc)
            raise
        except BaseException:
            self._end(job, None)
            raise
        self._start(entry)

    def resume(self, job: Job) -> None:
        """Continue a job left active by a previous run of the service."""
        with self._lock:
            if job.id in self._running:
                return
            entry = self._running[job.id] = _Running(job)
        self._start(entry)

    def cancel(self, job_id: str, wait: float = 10.0) -> bool:
        """Stop a running job and delete its partial files; False if it is not running here."""
        with self._lock:
            entry = self._running.get(job_id)
        if entry is None:
            return False
        entry.cancel.set()
        if entry.thread is not None:
            entry.thread.join(wait)
        return True

    def discard(self, job_id: str) -> None:
        """Remove a job's partial folder."""
        shutil.rmtree(self.partial_dir(job_id), ignore_errors=True)

    def clean_orphans(self, keep: set[str]) -> None:
        """Delete partial folders that belong to no active job (left by a crash)."""
        if not self.partial_root.is_dir():
            return
        with self._lock:
            keep = keep | set(self._running)
        for folder in self.partial_root.iterdir():
            if folder.name not in keep:
                shutil.rmtree(folder, ignore_errors=True)

    def close(self, timeout: float = 10.0) -> None:
        """Stop every job as a shutdown would (partial files stay for resume)."""
        self.stop.set()
        with self._lock:
            threads = [r.thread for r in self._running.values() if r.thread is not None]
        for thread in threads:
            thread.join(timeout)

    def _client(self, source: Source) -> httpx.Client:
        options: dict[str, Any] = {"follow_redirects": True, "headers": {
            "User-Agent": "compute-bridge"}, "timeout": httpx.Timeout(self.timeout)}
        return public_client(**options) if source.public_only else httpx.Client(**options)

    def _start(self, entry: _Running) -> None:
        entry.job.status = "downloading"
        self.store.set_status(entry.job.model_id, "downloading")
        self._save(entry.job)
        entry.thread = threading.Thread(target=self._run, args=(entry,), daemon=True,
                                        name=f"download-{entry.job.model_id}")
        entry.thread.start()

    def _plan(self, job: Job, client: httpx.Client) -> Plan:
        if job.plan is None:
            job.plan = resolve(job.source, endpoint=self.hf_endpoint, timeout=self.timeout,
                               client=client, models_root=self.store.root)
        files = self.partial_dir(job.id) / "files"
        files.mkdir(parents=True, exist_ok=True)
        job.bytes_total = job.plan.total
        job.bytes_done = sum(min((files / f.name).stat().st_size, f.size or 1 << 62)
                             for f in job.plan.files if (files / f.name).is_file())
        if job.bytes_total is not None:
            need = job.bytes_total - job.bytes_done + (job.bytes_total if job.plan.archive else 0)
            free = shutil.disk_usage(self.partial_root).free
            if free < need + RESERVE_BYTES:
                raise DownloadError(DISK_FULL, f"Not enough disk space: {need} bytes needed, "
                                    f"{free} free", needed_bytes=need, free_bytes=free)
        return job.plan

    def _run(self, entry: _Running) -> None:
        job = entry.job
        try:
            with self._client(job.source) as client:
                plan = self._plan(job, client)
                self._fetch(entry, plan, client)
            folder = self.partial_dir(job.id) / "files"
            if plan.archive:
                folder = self.partial_dir(job.id) / "unpacked"
                shutil.rmtree(folder, ignore_errors=True)
                unpack(self.partial_dir(job.id) / "files" / plan.files[0].name, folder)
            meta = {**model_facts(folder), **{k: v for k, v in plan.meta.items() if v}}
            if is_stored(self.store, job.model_id):  # stored by someone else meanwhile
                raise DownloadError(ALREADY_STORED, f"Model {job.model_id!r} was stored while "
                                    "this download ran; it is kept and this copy discarded")
            self.store.register(job.model_id, folder, **meta)
            job.bytes_done = job.bytes_total or job.bytes_done
            self._end(job, "completed")
        except Stopped as stop:
            if stop.reason == "cancel":
                self._end(job, "cancelled")
            else:  # shutdown: the row still says downloading and the partial files stay
                self._forget(job)
        except DownloadError as exc:
            self._end(job, "failed", exc)
        except BridgeError as exc:  # register refused the folder
            self._end(job, "failed", DownloadError(INVALID_MODEL, exc.message))
        except Exception as exc:
            log.exception("download %s of %s failed", job.id, job.model_id)
            self._end(job, "failed", DownloadError(INTERNAL, f"{type(exc).__name__}: {exc}"))

    def _fetch(self, entry: _Running, plan: Plan, client: httpx.Client) -> None:
        job, folder = entry.job, self.partial_dir(entry.job.id) / "files"
        sizes = {f.name: (folder / f.name).stat().st_size if (folder / f.name).is_file() else 0
                 for f in plan.files}
        meter, last_save = Meter(), [time.monotonic()]
        headers = {"Accept-Encoding": "identity"}
        if job.source.kind == "huggingface":
            from bridge.downloads.hub import hub_headers

            headers = hub_headers()
        for file in plan.files:

            def tick(done: int, name: str = file.name) -> None:
                if entry.cancel.is_set():
                    raise Stopped("cancel")
                if self.stop.is_set():
                    raise Stopped("shutdown")
                sizes[name] = done
                job.bytes_done = sum(sizes.values())
                now = time.monotonic()
                job.speed_bps = meter.add(now, job.bytes_done)
                if now - last_save[0] >= self.progress_every:
                    last_save[0] = now
                    self._save(job)

            dest = folder / file.name
            dest.parent.mkdir(parents=True, exist_ok=True)
            if job.source.kind == "path":
                copy_local(file, dest, tick=tick)
            else:
                fetch_http(file, dest, client=client, headers=headers, tick=tick,
                           retries=self.retries)
            verify(file, dest)

    def _end(self, job: Job, status: str | None, error: DownloadError | None = None) -> None:
        """Finish a job: partial files go, the store's override clears, then the row is saved."""
        self.discard(job.id)
        if status != "completed":  # register() already showed the model as ready
            self.store.set_status(job.model_id, None)
        if status is not None:
            final = replace(job, status=status, speed_bps=None)
            if error is not None:  # a message never carries the URL's credentials
                message = error.message.replace(job.source.location, job.source.display())
                final.error_type, final.error_message = error.error_type, message
            self._save(final)  # stored before the live job (what status reads) says it ended
            job.status, job.speed_bps = final.status, None
            job.error_type, job.error_message = final.error_type, final.error_message
        self._forget(job)

    def _forget(self, job: Job) -> None:
        with self._lock:
            self._running.pop(job.id, None)
        if job.status not in ("completed", "failed", "cancelled"):
            self.store.set_status(job.model_id, None)

    def _save(self, job: Job) -> None:
        try:
            self.save(job)
        except Exception:  # a database hiccup must not kill the transfer
            log.exception("could not record progress of download %s", job.id)

def resolve(source: Source, *, endpoint: str | None, timeout: float,
            client: httpx.Client, models_root: Path) -> Plan:  # fmt: skip
    """The file plan of a source, read from the Hub, the URL's headers or the file system."""
    if source.kind == "huggingface":
        return resolve_repo(source, endpoint=endpoint, timeout=timeout)
    if source.kind == "url":
        return sources.resolve_url(source, client)
    return sources.resolve_path(source, models_root)
