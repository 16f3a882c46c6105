"""Conversations: every generation is stored; users see and delete only their own."""

from __future__ import annotations

import secrets
from typing import Any

from flask import Blueprint
from sqlalchemy import delete, func, select

from bridge.errors import NotFound
from bridge.types import Message
from local_api.accounts.identity import current_identity, login_required
from local_api.docs import spec
from local_api.events import bus
from local_api.storage import schema
from local_api.storage.db import engine
from local_api.timeutil import iso, utcnow
from local_api.validation import int_arg

bp = Blueprint("conversations", __name__, url_prefix="/conversations")
HISTORY_LIMIT = 50  # most recent messages fed back to the model


def _owned(conn: Any, conversation_id: str, user_id: int) -> Any:
    table = schema.conversations
    row = (
        conn.execute(
            select(table).where(table.c.id == conversation_id, table.c.user_id == user_id)
        )
        .mappings()
        .first()
    )
    if row is None:  # someone else's conversation is indistinguishable from none
        raise NotFound("Conversation not found", details={"conversation_id": conversation_id[:64]})
    return row


def history(conversation_id: str, user_id: int) -> tuple[Message, ...]:
    """The stored messages of an owned conversation, oldest first (NotFound otherwise)."""
    table = schema.messages
    with engine().connect() as conn:
        _owned(conn, conversation_id, user_id)
        rows = conn.execute(
            select(table.c.role, table.c.content)
            .where(table.c.conversation_id == conversation_id)
            .order_by(table.c.id.desc())
            .limit(HISTORY_LIMIT)
        ).all()
    return tuple(Message(role, content) for role, content in reversed(rows))


def append(
    conversation_id: str | None,
    user_id: int,
    model: str,
    prompt: str,
    answer: str,
    *,
    backend: str,
    tokens: int,
    turns: tuple[Message, ...] = (),
) -> str:
    """Store one exchange (creating the conversation when new) in one transaction: the user's
    ``prompt`` (or, when given, ``turns``: a tool-results turn's ``tool`` messages), then the
    ``answer``."""
    now = utcnow()
    with engine().begin() as conn:
        if conversation_id is None:
            conversation_id = f"conv_{secrets.token_hex(8)}"
            conn.execute(
                schema.conversations.insert().values(
                    id=conversation_id,
                    user_id=user_id,
                    title=prompt.strip().splitlines()[0][:80] if prompt.strip() else "(empty)",
                    model=model,
                    created_at=now,
                    updated_at=now,
                )
            )
        else:
            _owned(conn, conversation_id, user_id)
            conn.execute(
                schema.conversations.update()
                .where(schema.conversations.c.id == conversation_id)
                .values(updated_at=now, model=model)
            )
        conn.execute(
            schema.messages.insert(),
            [
                *({"conversation_id": conversation_id, "role": m.role, "content": m.content,
                   "created_at": now} for m in turns or (Message("user", prompt),)),
                {"conversation_id": conversation_id, "role": "assistant", "content": answer,
                 "backend": backend, "tokens": tokens, "created_at": utcnow()},
            ],
        )
    message = {"role": "assistant", "content": answer, "timestamp": iso(now)}
    bus().publish(
        "chat_update", {"conversation_id": conversation_id, "message": message}, user_id=user_id
    )
    return conversation_id


def _message(row: Any) -> dict[str, Any]:
    out = {"role": row["role"], "content": row["content"], "timestamp": iso(row["created_at"])}
    if row["backend"]:
        out["backend"] = row["backend"]
    return out


@bp.get("")
@spec("Your conversations, most recent first", query=("limit", "offset"))
@login_required
def list_conversations() -> dict[str, Any]:
    who = current_identity()
    assert who is not None
    limit, offset = int_arg("limit", 50, 1, 500), int_arg("offset", 0, 0, 10**9)
    convs, msgs = schema.conversations, schema.messages
    counts = (
        select(msgs.c.conversation_id, func.count().label("n"))
        .group_by(msgs.c.conversation_id)
        .subquery()
    )
    query = (
        select(convs, counts.c.n)
        .join(counts, counts.c.conversation_id == convs.c.id, isouter=True)
        .where(convs.c.user_id == who.user_id)
        .order_by(convs.c.updated_at.desc())
        .limit(limit)
        .offset(offset)
    )
    with engine().connect() as conn:
        rows = conn.execute(query).mappings().all()
    return {
        "conversations": [
            {
                "id": r["id"],
                "title": r["title"],
                "model": r["model"],
                "message_count": r["n"] or 0,
                "created_at": iso(r["created_at"]),
                "updated_at": iso(r["updated_at"]),
            }
            for r in rows
        ]
    }


@bp.get("/<conversation_id>")
@spec("One conversation with its messages")
@login_required
def get_conversation(conversation_id: str) -> dict[str, Any]:
    who = current_identity()
    assert who is not None
    with engine().connect() as conn:
        row = _owned(conn, conversation_id, who.user_id)
        messages = conn.execute(
            select(schema.messages)
            .where(schema.messages.c.conversation_id == conversation_id)
            .order_by(schema.messages.c.id)
        ).mappings()
        return {
            "conversation": {
                "id": row["id"],
                "title": row["title"],
                "model": row["model"],
                "created_at": iso(row["created_at"]),
                "messages": [_message(m) for m in messages],
            }
        }


@bp.delete("/<conversation_id>")
@spec("Delete one of your conversations")
@login_required
def delete_conversation(conversation_id: str) -> dict[str, Any]:
    who = current_identity()
    assert who is not None
    with engine().begin() as conn:
        _owned(conn, conversation_id, who.user_id)
        conn.execute(
            delete(schema.messages).where(schema.messages.c.conversation_id == conversation_id)
        )
        conn.execute(
            delete(schema.conversations).where(schema.conversations.c.id == conversation_id)
        )
    return {"message": "Conversation deleted", "id": conversation_id}
