"""`bridge chat`: stream an answer to the terminal, or hold a conversation with `-i`."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from bridge.errors import BridgeError, ServiceUnreachable, Unauthorized
from local_api.cli.credentials import add_service_options, client_for

HELP_LINE = ("Type a message; Ctrl-C stops an answer, /new starts a new conversation, "
             "/bye (or Ctrl-D) ends the session.")


def parameters(args: argparse.Namespace) -> dict[str, Any]:
    given = {"temperature": args.temperature, "max_tokens": args.max_tokens,
             "top_p": args.top_p, "top_k": args.top_k, "seed": args.seed}
    return {k: v for k, v in given.items() if v is not None}


def stream_answer(client: Any, args: argparse.Namespace, prompt: str,
                  conversation_id: str | None) -> str | None:
    """Print tokens as they arrive; the conversation id the answer was stored under."""
    with client.chat.stream(
        prompt=prompt, model_id=args.model, parameters=parameters(args) or None,
        conversation_id=conversation_id,
    ) as stream:  # leaving early (Ctrl-C) closes it, which stops the generation
        try:
            for token in stream:
                sys.stdout.write(token)
                sys.stdout.flush()
        finally:
            sys.stdout.write("\n")
            sys.stdout.flush()
    for switch in stream.switches:
        print(f"[answer moved from {switch.get('from')} to {switch.get('to')}]", file=sys.stderr)
    final = stream.final or {}
    if args.verbose and final:
        usage = final.get("usage") or {}
        print(f"[{final.get('backend', '?')} · {usage.get('completion_tokens', '?')} tokens · "
              f"conversation {final.get('conversation_id', '?')}]", file=sys.stderr)
    return final.get("conversation_id") or conversation_id


def interactive(client: Any, args: argparse.Namespace) -> int:
    """A read-eval loop keeping one conversation; errors are reported and the session goes on."""
    tty = sys.stdin.isatty()
    if tty:
        import readline  # noqa: F401  (line editing and history for input())

        print(HELP_LINE, file=sys.stderr)
    conversation_id = args.conversation
    if args.prompt:
        conversation_id = stream_answer(client, args, args.prompt, conversation_id)
    while True:
        try:
            line = input(">>> " if tty else "")
        except EOFError:
            if tty:
                print()  # end the prompt's line
            break
        text = line.strip()
        if not text:
            continue
        if text in ("/bye", "/exit", "/quit"):
            break
        if text == "/new":
            conversation_id = None
            print("(new conversation)", file=sys.stderr)
            continue
        try:
            conversation_id = stream_answer(client, args, text, conversation_id)
        except KeyboardInterrupt:  # Ctrl-C stops this answer (unstored), not the session
            print("(answer stopped)", file=sys.stderr)
        except (ServiceUnreachable, Unauthorized):
            raise
        except BridgeError as exc:
            from local_api.cli.parser import describe, one_line

            print(f"bridge: error: {one_line(describe(exc, args))}", file=sys.stderr)
    return 0


def chat(args: argparse.Namespace) -> int:
    from local_api.cli.parser import UsageError

    if not args.interactive and not args.prompt:
        if sys.stdin.isatty():
            raise UsageError("give a prompt (bridge chat \"hello\"), pipe one in, or use -i")
        args.prompt = sys.stdin.read().strip()
        if not args.prompt:
            raise UsageError("the prompt on stdin is empty")
    with client_for(args) as client:
        if args.interactive:
            return interactive(client, args)
        stream_answer(client, args, args.prompt, args.conversation)
    return 0


def register(sub: Any) -> None:
    p = sub.add_parser(
        "chat", help="chat with a model (tokens stream as they arrive)",
        description="Send a prompt and stream the answer to the terminal. With -i, keep a "
        "conversation going line by line. Without a prompt, the prompt is read from stdin.",
    )
    add_service_options(p)
    p.add_argument("prompt", nargs="?", help="what to say (default: read stdin)")
    p.add_argument("-i", "--interactive", action="store_true",
                   help="an interactive session that keeps the conversation")
    p.add_argument("-m", "--model", help="model id (default: the service's default model)")
    p.add_argument("-t", "--temperature", type=float, help="0-2; 0 is greedy (deterministic)")
    p.add_argument("-n", "--max-tokens", type=int, help="longest answer in tokens (1-4096)")
    p.add_argument("--top-p", type=float, help="nucleus sampling, (0, 1]")
    p.add_argument("--top-k", type=int, help="sample from the k likeliest tokens")
    p.add_argument("--seed", type=int, help="seed for reproducible sampling")
    p.add_argument("-c", "--conversation", help="continue this conversation id")
    p.add_argument("-v", "--verbose", action="store_true",
                   help="after the answer, print backend, tokens and conversation id to stderr")
    p.set_defaults(func=chat)
