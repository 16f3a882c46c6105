"""The landing page at ``/`` and the documentation at ``/docs/``.

``/docs/`` serves the built site (``make docs`` writes it to ``site/`` in the checkout); before
it is built, the Markdown sources in ``docs/`` are shown as HTML (markdown-it-py), so a fresh
clone has somewhere to land either way.
"""

from __future__ import annotations

import html
from pathlib import Path

from flask import Blueprint, Response, abort, send_from_directory

from local_api.docs import spec

bp = Blueprint("landing", __name__)

CHECKOUT = Path(__file__).resolve().parents[2]
SITE_DIR, SOURCE_DIR = CHECKOUT / "site", CHECKOUT / "docs"
# The built site runs its own scripts and styles (search, theme toggle); nothing off-host.
DOCS_CSP = ("default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; "
            "frame-ancestors 'none'")
PAGE = """<!doctype html><html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1"><title>{title}</title>
<style>body{{font-family:system-ui,sans-serif;max-width:48rem;margin:2rem auto;padding:0 1rem;
line-height:1.5}}pre,code{{background:#8881;padding:.1em .3em}}pre{{overflow:auto;padding:1em}}
table{{border-collapse:collapse}}td,th{{border:1px solid #8886;padding:.2em .5em}}</style>
</head><body>{body}</body></html>"""


def _html(title: str, body: str, csp: str = DOCS_CSP) -> Response:
    response = Response(PAGE.format(title=html.escape(title), body=body), mimetype="text/html")
    response.headers["Content-Security-Policy"] = csp
    response.headers["Cache-Control"] = "no-cache"
    return response


@bp.get("/")
@spec("Landing page: links to the docs, the status and the API reference", auth="none")
def landing() -> Response:
    built = (SITE_DIR / "index.html").is_file()
    docs_note = "" if built else " (the source pages; <code>make docs</code> builds the site)"
    body = f"""<h1>Compute Bridge</h1>
<p>One local LLM API for notebooks and apps. This service is running.</p>
<ul>
<li><a href="/docs/">Documentation</a>{docs_note}</li>
<li><a href="/api/v1/system/status">System status</a> (<code>/api/v1/system/status</code>,
needs a token; <a href="/readyz">/readyz</a> does not)</li>
<li><a href="/api/v1/openapi.json">API reference</a> (OpenAPI 3.1,
<code>/api/v1/openapi.json</code>)</li>
<li>OpenAI clients: <code>/v1</code>; Ollama clients: <code>/ollama</code></li>
</ul>
<p>First answer: <code>bridge login --username NAME</code>, then
<code>bridge chat "Hello"</code>.</p>"""
    return _html("Compute Bridge", body)


@bp.get("/docs/")
@bp.get("/docs/<path:path>")
@spec("The documentation: the built site, else its Markdown sources", auth="none")
def docs(path: str = "") -> Response:
    if (SITE_DIR / "index.html").is_file():
        target = path if path and not path.endswith("/") else f"{path}index.html"
        response = send_from_directory(SITE_DIR, target)
        response.headers["Content-Security-Policy"] = DOCS_CSP
        response.headers["Cache-Control"] = "no-cache"
        return response
    return _source_page(path)


def _source_page(path: str) -> Response:
    from markdown_it import MarkdownIt

    if not path or path.endswith("/"):
        pages = sorted(p.relative_to(SOURCE_DIR).as_posix() for p in SOURCE_DIR.rglob("*.md"))
        items = "".join(f'<li><a href="/docs/{p}">{html.escape(p)}</a></li>' for p in pages)
        return _html("Documentation", f"<h1>Documentation</h1><ul>{items}</ul>")
    file = (SOURCE_DIR / path).resolve()
    if not (file.is_relative_to(SOURCE_DIR) and file.suffix == ".md" and file.is_file()):
        abort(404)
    # html=False: the page's own HTML (comments, say) is shown as text, never run
    rendered = MarkdownIt("commonmark", {"html": False}).enable("table").render(file.read_text())
    return _html(path, '<p><a href="/docs/">All pages</a></p>' + rendered)
