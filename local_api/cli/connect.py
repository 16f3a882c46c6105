"""`bridge connect` / `bridge disconnect`: attach remote compute to the service, or detach it."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from bridge.config import NGROK_TOKEN_ENV, WORKER_SECRET_ENV, exported_secret
from bridge.sdk.types import human_bytes
from local_api.cli.credentials import add_service_options, client_for
from local_api.cli.models import as_dict

RUNTIME_TOKEN_ENV = "BRIDGE_RUNTIME_TOKEN"
CLIENT_SECRET_ENV, OPENAI_KEY_ENV = "BRIDGE_GOOGLE_CLIENT_SECRET", "BRIDGE_OPENAI_API_KEY"
NGROK_ENV = NGROK_TOKEN_ENV


def secret_from(path: str | None, env: str, what: str, flag: str,
                *, required: bool = True) -> str | None:
    """A secret from a file or the environment; never from the command line."""
    from local_api.cli.parser import UsageError

    if path:
        try:
            value = Path(path).read_text().strip()
        except OSError as exc:
            raise UsageError(f"cannot read the {what} from {path}: {exc.strerror}") from None
    else:
        value = exported_secret(env)
    if required and not value:
        raise UsageError(f"no {what}: pass {flag} FILE or set {env}")
    return value or None


def connect_body(args: argparse.Namespace) -> dict[str, Any]:
    """The POST /system/colab/connect body for the way the flags chose."""
    body: dict[str, Any] = {}
    if args.worker_url:
        body["worker_url"] = args.worker_url
        body["worker_secret"] = secret_from(args.worker_secret_file, WORKER_SECRET_ENV,
                                            "worker secret", "--worker-secret-file")
    elif args.runtime_url:
        body["runtime_url"] = args.runtime_url
        token = secret_from(args.token_file, RUNTIME_TOKEN_ENV, "runtime token", "--token-file",
                            required=False)
        if token:
            body["token"] = token
    elif args.openai_url:
        body["openai_base_url"] = args.openai_url
        key = secret_from(args.openai_key_file, OPENAI_KEY_ENV, "API key", "--openai-key-file",
                          required=False)
        if key:
            body["api_key"] = key
    else:
        body["credentials"] = {
            "client_id": args.client_id,
            "client_secret": secret_from(args.client_secret_file, CLIENT_SECRET_ENV,
                                         "Google client secret", "--client-secret-file"),
        }
        for key in ("accelerator", "manual"):
            if getattr(args, key):
                body[key] = getattr(args, key)
    for key in ("model_id", "quantization", "tunnel", "name", "timeout"):
        if getattr(args, key) is not None:
            body[key] = getattr(args, key)
    if args.tunnel == "ngrok":
        body["ngrok_token"] = secret_from(args.ngrok_token_file, NGROK_ENV, "ngrok token",
                                          "--ngrok-token-file")
    return body


def connect(args: argparse.Namespace) -> int:
    body = connect_body(args)
    with client_for(args) as client:
        result = as_dict(client.colab.connect(**body))
    state = result.get("status")
    if state == "authorization_required":
        print("Google needs your consent. Open this link, allow access, then run the same "
              f"command again:\n{result.get('auth_url')}")
        return 0
    if result.get("colab_url"):
        print(f"{state}: {result.get('message', 'open the worker notebook in Colab')}\n"
              f"{result['colab_url']}")
        return 0
    info = result.get("runtime_info") or {}
    facts = [str(info[k]) for k in ("type", "gpu", "device") if info.get(k)]
    if info.get("memory"):
        facts.append(human_bytes(info["memory"]))
    models = ", ".join(result.get("models") or [])
    print(f"{state}: {result.get('worker', '?')} at {result.get('url', '?')}"
          + (f" ({', '.join(facts)})" if facts else "") + (f"; models: {models}" if models else ""))
    return 0


def disconnect(args: argparse.Namespace) -> int:
    with client_for(args) as client:
        result = as_dict(client.colab.disconnect(args.name))
    print(f"detached {result.get('worker') or result.get('name') or args.name or 'the worker'}")
    return 0


def register(sub: Any) -> None:
    from bridge.models.store import QUANTIZATIONS

    p = sub.add_parser(
        "connect", help="attach remote compute: a worker, a Jupyter runtime, Colab, OpenAI",
        description="Attach remote compute to the service (admin). One of:\n"
        f"  --worker-url URL   a running `bridge worker` (secret: --worker-secret-file or "
        f"${WORKER_SECRET_ENV})\n"
        f"  --runtime-url URL  a Jupyter server (token: --token-file or ${RUNTIME_TOKEN_ENV})\n"
        f"  --client-id ID     Google Colab (secret: --client-secret-file or "
        f"${CLIENT_SECRET_ENV})\n"
        f"  --openai-url URL   an OpenAI-compatible server (key: --openai-key-file or "
        f"${OPENAI_KEY_ENV})\n"
        f"Secrets never go on the command line; --tunnel ngrok needs --ngrok-token-file or "
        f"${NGROK_ENV}.",
    )
    add_service_options(p)
    how = p.add_mutually_exclusive_group(required=True)
    how.add_argument("--worker-url", help="URL of a running worker")
    how.add_argument("--runtime-url", help="URL of a Jupyter server (Kaggle, a lab machine...)")
    how.add_argument("--client-id", help="Google OAuth client id (Colab)")
    how.add_argument("--openai-url", help="base URL of an OpenAI-compatible server (vLLM...)")
    p.add_argument("--worker-secret-file", help="file holding the worker's secret")
    p.add_argument("--token-file", help="file holding the Jupyter server's token")
    p.add_argument("--client-secret-file", help="file holding the Google client secret")
    p.add_argument("--openai-key-file", help="file holding the OpenAI-compatible server's key")
    p.add_argument("--accelerator", help="Colab accelerator, e.g. T4")
    p.add_argument("--manual", action="store_true",
                   help="Colab: put the worker notebook in your Drive and print its link")
    p.add_argument("--model", dest="model_id", help="model the worker loads")
    p.add_argument("--quantization", choices=QUANTIZATIONS, help="for --model")
    p.add_argument("--tunnel", choices=("none", "ngrok"), help="how a launched worker is reached")
    p.add_argument("--ngrok-token-file", help=f"file holding the ngrok token (else ${NGROK_ENV})")
    p.add_argument("--name", help="name of the attached backend (default: chosen by the service)")
    p.add_argument("--timeout", type=float, help="seconds to wait for the worker (1-600)")
    p.set_defaults(func=connect)

    p = sub.add_parser("disconnect", help="detach remote compute (admin)",
                       description="Detach a remote backend; a launched worker is stopped and "
                       "its Colab runtime released.")
    add_service_options(p)
    p.add_argument("name", nargs="?", help="which backend (default: the only one attached)")
    p.set_defaults(func=disconnect)
