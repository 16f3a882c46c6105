"""ModelsWidget: the catalog with a button per model (download, cancel, load, unload) and a
live progress bar for each download. A failed download offers Retry; pressing it shows
"Retrying…" (button disabled) until the service answers, then the new outcome, a failure
with its attempt number and time (``attempt 2 at 16:21:05``), so a retry never looks idle."""

from __future__ import annotations

import threading
import time
from typing import Any

import ipywidgets as w

from bridge.sdk.client import Client
from bridge.sdk.types import DownloadJob, Model, human_bytes
from bridge.widgets import text
from bridge.widgets.base import BaseWidget, escape

ACTIONS = {"downloadable": "Download", "queued": "Cancel", "downloading": "Cancel",
           "ready": "Load", "available": "Load", "loaded": "Unload", "failed": "Retry",
           "cancelled": "Download"}
ACTIVE = ("queued", "downloading")


class ModelRow:
    """One model: its name, status, progress bar, details and action button."""

    def __init__(self, owner: ModelsWidget, model_id: str) -> None:
        self.model_id = model_id
        self.job_status = ""  # the last download's status seen on this row
        self.attempts = 0  # downloads started from this row (Retry adds one)
        # the name is there from the start (a download begun from code has no catalog row yet)
        self.name = w.HTML(f"<b>{escape(model_id)}</b>", layout=w.Layout(min_width="16em"))
        self.status = w.HTML(layout=w.Layout(min_width="7em"))
        self.bar = w.FloatProgress(min=0.0, max=1.0, value=0.0,
                                   layout=w.Layout(width="10em", visibility="hidden"))
        self.detail = w.HTML(layout=w.Layout(min_width="16em"))
        self.button = w.Button(layout=w.Layout(width="auto", min_width="7em"))
        owner.on_click(self.button, lambda: owner.act(self.model_id))
        self.box = w.HBox([self.name, self.status, self.bar, self.detail, self.button],
                          layout=w.Layout(flex_flow="row wrap", align_items="center"))

    @property
    def active(self) -> bool:
        return self.job_status in ACTIVE

    def show_model(self, model: Model) -> None:
        size = model.size or human_bytes(model.bytes)
        self.name.value = f"<b>{escape(model.id)}</b> <small>{escape(size)}</small>"
        if self.job_status == "failed" and model.status == "downloadable":
            return  # keep the failure and its Retry on the row
        self.set_status(str(model.status))

    def set_status(self, status: str) -> None:
        self.status.value = escape(status)
        action = ACTIONS.get(status)
        self.button.description = action or ""
        self.button.disabled = action is None
        self.button.layout.visibility = "visible" if action else "hidden"

    def show_job(self, job: DownloadJob) -> None:
        """A download's progress: bar, percentage, speed and time left."""
        self.set_status(str(job.status))
        self.job_status = str(job.status)
        self.bar.value = float(job.progress or 0.0)
        self.bar.layout.visibility = "visible"
        self.bar.bar_style = {"completed": "success", "failed": "danger",
                              "cancelled": "warning"}.get(str(job.status), "info")
        line = text.progress(job)
        if job.status == "failed":
            failure: dict[str, Any] = dict(job.error or {})
            reason = failure.get("message") or "the download failed"
            line = f"failed: {reason}"
        self.detail.value = f"<small>{escape(line)}</small>"

    def show_retrying(self) -> None:
        """Retry pressed: the button says so and waits (disabled) for the service's answer."""
        self.job_status = "queued"
        self.status.value = "retrying"
        self.button.description, self.button.disabled = "Retrying…", True
        self.bar.bar_style = "info"
        self.detail.value = f"<small>retrying… (attempt {self.attempts})</small>"

    def attempt(self) -> str:
        """``attempt 2 at 16:21:05`` (local time) after a retry; '' for a first attempt."""
        if self.attempts < 2:
            return ""
        return f"attempt {self.attempts} at {time.strftime('%H:%M:%S')}"

    def show_failure(self, error: BaseException) -> str:
        """The download failed before or while it ran: say why on the row (with the attempt
        and its time after a retry), offer Retry. Returns the attempt ('' for a first)."""
        self.job_status = "failed"
        self.set_status("failed")
        self.bar.bar_style = "danger"
        attempt = self.attempt()
        line = f"{attempt}: {text.error(error)}" if attempt else text.error(error)
        self.detail.value = f"<small>{escape(line)}</small>"
        return attempt


class ModelsWidget(BaseWidget):
    """The service's models; buttons act on one model each, downloads show live progress."""

    def __init__(self, client: Client | None = None, *, poll_interval: float = 0.5,
                 **client_options: Any) -> None:
        super().__init__(client, client_options)
        self.poll_interval = poll_interval
        self.rows: dict[str, ModelRow] = {}
        self._sources: dict[str, dict[str, Any]] = {}  # what Retry downloads again
        self.table = w.VBox()
        self.refresh_button = w.Button(description="Refresh", icon="refresh")
        self.on_click(self.refresh_button, self.refresh)
        self.widget = w.VBox([self.refresh_button, self.table, self.error])
        if self.client is not None:
            self.refresh()

    def refresh(self) -> None:
        """Read the catalog again (running downloads keep their bars)."""
        self.guard(self._refresh)

    def _refresh(self) -> None:
        models = self.sdk.models.list()
        for model in models:
            row = self._row(model.id)
            if not row.active or model.status != "downloadable":
                row.show_model(model)
        listed = {m.id for m in models}
        # a model removed since (elsewhere, or by its failed download) leaves the table
        for gone in [m for m, row in self.rows.items()
                     if m not in listed and not row.active and row.job_status != "failed"]:
            del self.rows[gone]
        self.table.children = [row.box for row in self.rows.values()]
        self.clear_error()

    def _row(self, model_id: str) -> ModelRow:
        if model_id not in self.rows:
            self.rows[model_id] = ModelRow(self, model_id)
            self.table.children = (*self.table.children, self.rows[model_id].box)
        return self.rows[model_id]

    def act(self, model_id: str) -> threading.Thread | None:
        """What the model's button says: download, cancel, load or unload."""
        action = self._row(model_id).button.description
        if action in ("Download", "Retry"):
            return self.download(model_id, **self._sources.get(model_id, {}))
        if action == "Cancel":
            return self.in_thread(self._cancel, model_id)
        if action in ("Load", "Unload"):
            self._row(model_id).button.disabled = True
            return self.in_thread(self._load, model_id, action == "Load")
        return None

    def download(self, model_id: str, **source: Any) -> threading.Thread | None:
        """Start a download (a registry id, or ``repo_id=``, ``url=``, ``path=``...);
        its bar moves as it goes. ``wait()`` blocks until it ends. After a failure on the
        row (Retry), the row says "Retrying…" until the service accepts or refuses it."""
        if self.guard(lambda: self.sdk) is None:
            return None
        self.clear_error()
        self._sources[model_id] = source
        row = self._row(model_id)
        retry = row.job_status == "failed"
        row.attempts += 1
        if retry:
            row.show_retrying()
        else:
            row.job_status = "queued"
            row.set_status("queued")
            row.detail.value = "<small>starting…</small>"
        return self.in_thread(self._download, model_id, source)

    def _download(self, model_id: str, source: dict[str, Any]) -> None:
        row = self.rows[model_id]
        try:
            job = self.sdk.models.download(model_id, progress=row.show_job,
                                           poll_interval=self.poll_interval, **source)
        except Exception as exc:
            attempt = row.show_failure(exc)
            self.guard(self._refresh)
            again = f" again ({attempt})" if attempt else ""
            self.show_error(f"Download of {model_id} failed{again}: {text.error(exc)}")
            return
        row.attempts = 0  # a later failure is a first one again
        row.show_job(job)
        self._refresh()

    def _cancel(self, model_id: str) -> None:
        self.rows[model_id].show_job(self.sdk.models.cancel(model_id))

    def _load(self, model_id: str, load: bool) -> None:
        row = self.rows[model_id]
        try:
            if load:
                done = self.sdk.models.load(model_id)
                row.bar.layout.visibility = "hidden"  # the download is over: its bar goes
                row.detail.value = f"<small>loaded in {text.seconds(done.load_time)}</small>"
            else:
                self.sdk.models.unload(model_id)
                row.detail.value = ""
        finally:
            self.guard(self._refresh)
