"""The docs' reference pages, generated from the code at build time (mkdocs-gen-files).

Run by ``mkdocs build`` (mkdocs.yml, plugin ``gen-files``): every ``BRIDGE_*`` setting with its
default, read from ``bridge.config``; the HTTP API from the app's own OpenAPI document
(``/api/v1/openapi.json``); the ``bridge`` command's ``--help`` texts. Nothing here is kept
by hand, so the reference cannot drift from the code.
"""

from __future__ import annotations

import argparse
import ast
import dataclasses
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # this checkout's code, not an installed copy


def _field_comments(source: str, class_name: str) -> dict[str, str]:
    """Each dataclass field's comment: on its line, else the comment lines just above it."""
    lines = source.splitlines()
    tree = ast.parse(source)
    out: dict[str, str] = {}
    for node in ast.walk(tree):
        if not (isinstance(node, ast.ClassDef) and node.name == class_name):
            continue
        for item in node.body:
            if not (isinstance(item, ast.AnnAssign) and isinstance(item.target, ast.Name)):
                continue
            line = lines[item.lineno - 1]
            comment = line.split("  # ", 1)[1].strip() if "  # " in line else ""
            above: list[str] = []
            n = item.lineno - 2
            while n >= 0 and lines[n].strip().startswith("#"):
                above.insert(0, lines[n].strip().lstrip("#").strip())
                n -= 1
            out[item.target.id] = " ".join(filter(None, [" ".join(above), comment]))
    return out


def _default(f: dataclasses.Field[Any]) -> str:
    if f.name == "home":
        return "your user data directory (e.g. `~/.local/share/compute-bridge`)"
    if f.default is not dataclasses.MISSING:
        value = f.default
    elif f.default_factory is not dataclasses.MISSING:
        value = f.default_factory()
    else:
        return ""
    if value == "":
        return "*(empty)*"
    return f"`{value}`"


def settings_page() -> str:
    from bridge import config

    source = Path(config.__file__).read_text()
    comments = _field_comments(source, "Settings")
    rows = []
    for f in dataclasses.fields(config.Settings):
        if f.name == "tier_limits":
            for tier, limit in config.DEFAULT_TIER_LIMITS.items():
                rows.append(f"| `BRIDGE_LIMIT_{tier.upper()}` | `{limit}` | rate limit of the "
                            f"{tier} tier |")
            continue
        note = comments.get(f.name, "").replace("|", "\\|")
        rows.append(f"| `BRIDGE_{f.name.upper()}` | {_default(f)} | {note} |")
    client = [
        ("BRIDGE_URL", config.DEFAULT_SERVICE_URL, "the service the SDK, widgets and CLI talk to "
         "(else the service of the last `bridge login`)"),
        ("BRIDGE_API_KEY", "", "the API key they send (else the key `bridge login` stored)"),
        ("BRIDGE_USERNAME", "", "the CLI's account name where it asks for one"),
        ("BRIDGE_PASSWORD", "", "the CLI's password (never an argument)"),
        (config.WORKER_SECRET_ENV, "", "a GPU worker's shared secret"),
        (config.NGROK_TOKEN_ENV, "", "ngrok's authtoken, for `--tunnel ngrok`"),
    ]
    client_rows = [f"| `{name}` | {f'`{d}`' if d else '*(empty)*'} | {what} |"
                   for name, d, what in client]
    return "\n".join([
        "# Settings",
        "",
        "Generated from `bridge/config.py` at build time: every environment variable the "
        "service reads, with its default. No setting is needed to start.",
        "",
        "## The service (`bridge serve`)",
        "",
        "`DATABASE_URL` is read too when `BRIDGE_DATABASE_URL` is not set, and `HF_ENDPOINT` "
        "when `BRIDGE_HF_ENDPOINT` is not. Booleans take `1/0`, `true/false`, `yes/no`, "
        "`on/off`.",
        "",
        "| variable | default | what |",
        "| --- | --- | --- |",
        *rows,
        "",
        "## Clients and workers",
        "",
        "| variable | default | what |",
        "| --- | --- | --- |",
        *client_rows,
        "",
    ])


def openapi_document() -> dict[str, Any]:
    from local_api import create_app, shutdown
    from local_api.openapi import build

    with tempfile.TemporaryDirectory() as home:
        app = create_app({"home": home, "prepare_model": False})
        try:
            return build(app)
        finally:
            shutdown(app)


def http_page(document: dict[str, Any]) -> str:
    out = [
        "# HTTP API",
        "",
        "Generated at build time from the service's own OpenAPI document, the one a running "
        "service serves at `/api/v1/openapi.json`. Every route under `/api/v1` is also served "
        "under `/api`. Errors share one envelope, `{\"error\": {\"code\", \"message\", "
        "\"details\", \"request_id\"}}` (see [Errors](errors.md)).",
        "",
        "| method | path | what | auth |",
        "| --- | --- | --- | --- |",
    ]
    for path, operations in document["paths"].items():
        for method, op in operations.items():
            security = op.get("security", [])
            if not security:
                auth = "none"
            elif {} in security:
                auth = "optional"
            else:
                auth = "token"
            summary = str(op.get("summary", "")).replace("|", "\\|")
            out.append(f"| `{method.upper()}` | `{path}` | {summary} | {auth} |")
    out.append("")
    return "\n".join(out)


def _helps(parser: argparse.ArgumentParser, name: str) -> list[tuple[str, str]]:
    found = [(name, parser.format_help())]
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub_name, sub in action.choices.items():
                found += _helps(sub, f"{name} {sub_name}")
    return found


def cli_page() -> str:
    import os

    from local_api.cli.main import build_parser

    os.environ["COLUMNS"] = "100"  # argparse wraps to the terminal; a fixed width for the page
    out = ["# Command line", "", "Generated at build time from `bridge --help` and each "
           "command's `--help`.", ""]
    for name, text in _helps(build_parser(), "bridge"):
        out += [f"## `{name}`", "", "```text", text.rstrip(), "```", ""]
    return "\n".join(out)


def main() -> None:
    import mkdocs_gen_files

    pages = {
        "reference/settings.md": settings_page(),
        "reference/http-api.md": http_page(openapi_document()),
        "reference/cli.md": cli_page(),
    }
    for name, text in pages.items():
        with mkdocs_gen_files.open(name, "w") as handle:
            handle.write(text)


if __name__ in ("__main__", "<run_path>"):  # mkdocs-gen-files runs it with runpy.run_path
    main()
