"""The chat transcript's HTML: Markdown by markdown-it-py (raw HTML off, so an answer cannot
inject markup), code fences by Pygments in JupyterLab's own syntax colours, and every colour
from JupyterLab's theme variables so light and dark themes both read well."""

from __future__ import annotations

import html
from typing import Any

from jupyterlab_pygments import JupyterStyle
from markdown_it import MarkdownIt
from pygments import highlight
from pygments.formatters import HtmlFormatter
from pygments.lexers import TextLexer, get_lexer_by_name
from pygments.util import ClassNotFound

_FORMAT = HtmlFormatter(noclasses=True, style=JupyterStyle, nowrap=True)


def _code(code: str, language: str, _attrs: str) -> str:
    try:
        lexer = get_lexer_by_name(language) if language else TextLexer()
    except ClassNotFound:
        lexer = TextLexer()
    return (f"<pre class='bridge-code' style='{CODE}'><code class='bridge-fence'>"
            f"{highlight(code, lexer, _FORMAT)}</code></pre>")


_MD = MarkdownIt("commonmark", {"html": False, "breaks": True, "highlight": _code})
_MD.enable("table")

# ipywidgets' HTML inherits a 28 px line height (one widget row): set the reading one here.
TEXT = ("font-family:var(--jp-content-font-family);font-size:var(--jp-content-font-size1,14px);"
        "line-height:1.5;color:var(--jp-content-font-color1,#1a1a1a)")
CODE = ("font-family:var(--jp-code-font-family,monospace);font-size:var(--jp-code-font-size,13px);"
        "line-height:1.4;background:var(--jp-cell-editor-background,#f5f5f5);"
        "color:var(--jp-content-font-color1,#1a1a1a);padding:6px 8px;border-radius:4px;"
        "overflow-x:auto;white-space:pre;margin:4px 0")
BACKGROUND = {"user": "var(--jp-layout-color3,#e0e0e0)",
              "assistant": "var(--jp-layout-color2,#eeeeee)"}
WHO = {"user": "You", "assistant": "Assistant"}
# The copy button copies the rendered answer's text (navigator.clipboard: https or loopback).
_COPY = ("<button class='bridge-copy' title='Copy the answer' style='float:right;"
         "border:1px solid var(--jp-border-color1);background:var(--jp-layout-color1);"
         "color:var(--jp-ui-font-color1);border-radius:4px;cursor:pointer;font-size:11px' "
         "onclick=\"navigator.clipboard.writeText(this.parentElement.querySelector("
         "'.bridge-md').innerText)\">Copy</button>")


def markdown(text: str) -> str:
    """``text`` as HTML (Markdown with code fences; raw HTML is shown as text)."""
    # inline `code` in the code font too (fences carry their own class and style)
    rendered: str = _MD.render(text)
    return rendered.replace("<code>", "<code style='font-family:var("
                                    "--jp-code-font-family,monospace)'>")


def bubble(role: str, text: str, footer: str = "", *, final: bool = True) -> str:
    """One turn: who, the text (Markdown once the answer is complete, plain while streaming
    so a half-written fence does not jump around), and a footer (backend, tokens/s)."""
    body = markdown(text) if final else (
        f"<div style='white-space:pre-wrap'>{html.escape(text)}</div>")
    copy = _COPY if role == "assistant" and final and text else ""
    foot = (f"<div style='font-size:11px;color:var(--jp-ui-font-color2,#555)'>{footer}</div>"
            if footer else "")
    return (f"<div class='bridge-bubble bridge-{role}' style='margin:4px 0;padding:6px 10px;"
            f"border-radius:8px;background:{BACKGROUND[role]};{TEXT}'>{copy}"
            f"<b>{WHO[role]}</b><div class='bridge-md'>{body}</div>{foot}</div>")


def badge(backend: str, bits: list[str]) -> str:
    """The backend that answered, and how (tokens, tokens/s, a failover)."""
    # an outline, not a filled pill: the text keeps the transcript's own contrast in any theme
    return ("<span class='bridge-badge' style='border:1.5px solid var(--jp-success-color1,"
            "#188038);color:var(--jp-content-font-color1,#1a1a1a);border-radius:8px;"
            "padding:0 7px'>"
            f"{html.escape(backend)}</span> {html.escape(' · '.join(bits))}")


# Enter sends, Shift+Enter adds a newline. ipywidgets' Textarea has no key events and this
# package has no front-end build, so one page-wide listener is installed by an inline handler
# (HTML widgets set innerHTML: <script> never runs there, event attributes do). It clicks the
# Send button of the chat the key was typed in; elsewhere (VS Code) the button still works.
ENTER_TO_SEND = (
    "<img alt='' src='data:,' style='display:none' onerror=\"if(!window.bridgeEnterToSend){"
    "window.bridgeEnterToSend=1;document.addEventListener('keydown',function(e){"
    "var t=e.target;if(e.key!=='Enter'||e.shiftKey||e.isComposing||!t.closest||"
    "!t.closest('.bridge-chat-input'))return;e.preventDefault();e.stopPropagation();"
    "t.dispatchEvent(new Event('input',{bubbles:true}));"
    "var b=t.closest('.bridge-chat').querySelector('.bridge-send');"
    "if(b&&!b.disabled)setTimeout(function(){b.click()},50);},true);}\">")


def footer(final: Any, tokens: int, switched: str | None) -> list[str]:
    """What the answer's footer says: tokens, tokens/s, and a failover."""
    metrics = final.get("metrics") or {}
    usage = final.get("usage") or {}
    bits = [f"{usage.get('completion_tokens', tokens)} tokens"]
    tps = metrics.get("tokens_per_second")
    if tps:
        bits.append(f"{tps:.1f} tok/s")
    if switched:
        bits.append(f"switched from {switched}")
    return bits
