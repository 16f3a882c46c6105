"""`bridge status`, `backup` and `restore`: the service's state and its database."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from bridge.sdk.types import human_bytes
from local_api.cli.credentials import add_service_options, client_for
from local_api.cli.models import as_dict, print_table


def status(args: argparse.Namespace) -> int:
    with client_for(args) as client:
        snap = as_dict(client.system.status())
    if args.json:
        print(json.dumps(snap, indent=2))
        return 0
    res = snap.get("resources") or {}
    cpu, mem, gpu = res.get("cpu") or {}, res.get("memory") or {}, res.get("gpu")
    models = snap.get("models") or {}
    print(f"Service  {args.resolved_url} ({snap.get('status', '?')})")
    print(f"CPU      {cpu.get('usage', '?')}% of {cpu.get('cores', '?')} cores")
    print(f"Memory   {human_bytes(mem.get('used'))} used of {human_bytes(mem.get('total'))}")
    if gpu:
        print(f"GPU      {gpu.get('name')}: {human_bytes(gpu.get('memory_used'))} used of "
              f"{human_bytes(gpu.get('memory_total'))}")
    else:
        print("GPU      none")
    print(f"Loaded   {', '.join(models.get('loaded') or []) or '-'}")
    print(f"Stored   {', '.join(models.get('cached') or []) or '-'}")
    rows = [[b.get("name", ""), b.get("kind", ""), "yes" if b.get("healthy") else "no",
             f"{b['latency_ms']:.0f} ms" if b.get("latency_ms") is not None else "-",
             b.get("url") or "-"] for b in snap.get("backends") or []]
    print()
    print_table(rows, ["BACKEND", "KIND", "HEALTHY", "LATENCY", "URL"])
    return 0


def backup(args: argparse.Namespace) -> int:
    with client_for(args) as client:
        if args.list:
            backups = [as_dict(b) for b in client.db.list()]
            rows = [[b.get("id", ""), b.get("timestamp", ""), human_bytes(b.get("size")),
                     b.get("status", "")] for b in backups]
            print_table(rows, ["ID", "TIME", "SIZE", "STATUS"])
            return 0
        made = as_dict(client.db.backup())
    print(f"backup {made.get('backup_id')} {made.get('status')} at {made.get('timestamp')}")
    return 0


def restore(args: argparse.Namespace) -> int:
    from local_api.cli.parser import UsageError

    if not args.yes:
        if not sys.stdin.isatty():
            raise UsageError("restore replaces every account and conversation; pass --yes")
        answer = input(f"Replace the service's database with backup {args.backup_id}? [y/N] ")
        if answer.strip().lower() not in ("y", "yes"):
            print("not restored")
            return 1
    with client_for(args) as client:
        done = as_dict(client.db.restore(args.backup_id))
    print(f"restored {args.backup_id}: {done.get('status')} at {done.get('restored_at')}")
    return 0


def register(sub: Any) -> None:
    p = sub.add_parser("status", help="CPU, memory, GPU, models and backends of the service")
    add_service_options(p)
    p.add_argument("--json", action="store_true", help="print the raw status as JSON")
    p.set_defaults(func=status)

    p = sub.add_parser("backup", help="back up the service's database (admin)",
                       description="Create a backup of the service's database, or list them.")
    add_service_options(p)
    p.add_argument("--list", action="store_true", help="list the backups instead")
    p.set_defaults(func=backup)

    p = sub.add_parser("restore", help="restore the database from a backup (admin)",
                       description="Replace the service's database with a backup.")
    add_service_options(p)
    p.add_argument("backup_id")
    p.add_argument("-y", "--yes", action="store_true", help="do not ask for confirmation")
    p.set_defaults(func=restore)
