"""The tables, as SQLAlchemy Core; migrations.py creates and evolves them."""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
)

metadata = MetaData()

users = Table(
    "users",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("username", String(64), nullable=False),
    Column("username_key", String(64), nullable=False, unique=True),
    Column("email", String(254), nullable=False, unique=True),
    Column("password_hash", String(255), nullable=False),
    Column("role", String(16), nullable=False, default="user"),
    Column("tier", String(16), nullable=False, default="free"),
    Column("rate_limit", String(128)),
    Column("disabled", Boolean, nullable=False, default=False),
    Column("preferences", JSON, nullable=False, default=dict),
    Column("created_at", DateTime(timezone=True), nullable=False),
)

refresh_tokens = Table(
    "refresh_tokens",
    metadata,
    Column("jti", String(64), primary_key=True),
    Column("family", String(64), nullable=False, index=True),
    Column("user_id", Integer, ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
    Column("status", String(16), nullable=False, default="active"),  # active|used|revoked
    Column("expires_at", DateTime(timezone=True), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
)

revoked_tokens = Table(
    "revoked_tokens",
    metadata,
    Column("jti", String(64), primary_key=True),
    Column("expires_at", DateTime(timezone=True), nullable=False),
)

api_keys = Table(
    "api_keys",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("user_id", Integer, ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
    Column("name", String(100), nullable=False),
    Column("prefix", String(16), nullable=False, unique=True),
    Column("secret_hash", String(128), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("last_used_at", DateTime(timezone=True)),
    Column("revoked_at", DateTime(timezone=True)),
)

api_key_signing = Table(  # request signing: each key's derived HMAC key, sealed with crypto.box()
    "api_key_signing",
    metadata,
    Column("key_id", String(32), ForeignKey("api_keys.id", ondelete="CASCADE"), primary_key=True),
    Column("secret_enc", Text, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
)

audit_log = Table(
    "audit_log",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("at", DateTime(timezone=True), nullable=False),
    Column("event", String(64), nullable=False),
    Column("outcome", String(16), nullable=False),
    Column("user_id", Integer),
    Column("address", String(64)),
    Column("request_id", String(64)),
    Column("details", JSON, nullable=False, default=dict),
    Index("ix_audit_at", "at"),
)

conversations = Table(
    "conversations",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("user_id", Integer, ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
    Column("title", String(200), nullable=False),
    Column("model", String(128), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    Index("ix_conversations_user", "user_id", "updated_at"),
)

messages = Table(
    "messages",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column(
        "conversation_id",
        String(40),
        ForeignKey("conversations.id", ondelete="CASCADE"),
        nullable=False,
        index=True,
    ),
    Column("role", String(16), nullable=False),
    Column("content", Text, nullable=False),
    Column("backend", String(128)),
    Column("tokens", Integer),
    Column("created_at", DateTime(timezone=True), nullable=False),
)

download_jobs = Table(
    "download_jobs",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("model_id", String(128), nullable=False, index=True),
    Column("source", String(32), nullable=False),  # registry | url | path
    Column("location", Text, nullable=False),  # repo id, URL or local path
    Column("user_id", Integer, ForeignKey("users.id", ondelete="SET NULL")),
    Column("status", String(16), nullable=False),  # queued|downloading|completed|failed|cancelled
    Column("bytes_done", BigInteger, nullable=False, default=0),
    Column("bytes_total", BigInteger),
    Column("speed_bps", BigInteger),
    Column("sha256", String(64)),
    Column("error_type", String(32)),
    Column("error_message", Text),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    Column("claimed_by", String(64)),  # the instance running it (download lease)
    Column("lease_expires_at", DateTime(timezone=True)),  # another instance takes over after
)

download_plans = Table(  # what a download job needs to resume: the request and its file plan
    "download_plans",
    metadata,
    Column(
        "job_id",
        String(40),
        ForeignKey("download_jobs.id", ondelete="CASCADE"),
        primary_key=True,
    ),
    Column("request", JSON, nullable=False),  # bridge.downloads.sources.Source
    Column("plan", JSON),  # bridge.downloads.sources.Plan (files, sizes, digests, etags)
)

workers = Table(
    "workers",
    metadata,
    Column("name", String(64), primary_key=True),
    Column("kind", String(16), nullable=False),  # worker | openai
    Column("url", Text, nullable=False),
    Column("secret_enc", Text),  # worker secret or API key, encrypted (local_api.storage.crypto)
    Column("runtime", JSON, nullable=False, default=dict),  # runtime_info, colab assignment...
    Column("created_by", Integer, ForeignKey("users.id", ondelete="SET NULL")),
    Column("created_at", DateTime(timezone=True), nullable=False),
    # the last request any instance sent it (the keep-alive's clock): the idle check's input
    Column("used_at", Float),
)

google_accounts = Table(
    "google_accounts",
    metadata,
    Column("user_id", Integer, ForeignKey("users.id", ondelete="CASCADE"), primary_key=True),
    Column("credentials_enc", Text, nullable=False),  # google-auth credentials JSON, encrypted
    Column("pending", JSON),  # OAuth state between consent and callback (no secrets)
    Column("updated_at", DateTime(timezone=True), nullable=False),
)

leases = Table(  # one holder at a time for work shared by API instances (Colab keep-alive)
    "leases",
    metadata,
    Column("name", String(64), primary_key=True),
    Column("holder", String(200), nullable=False),
    Column("expires_at", DateTime(timezone=True), nullable=False),
)

schema_version = Table(
    "schema_version",
    metadata,
    Column("version", Integer, primary_key=True),
    Column("applied_at", DateTime(timezone=True), nullable=False),
    Column("note", Text),
)
