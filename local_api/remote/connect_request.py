"""A connect body parsed once into one typed request per way of attaching (the body untouched).

``timeout`` bounds the connect (each notebook step of a launch; a worker's model load);
``read_timeout`` is how long an attached worker may stay silent.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from bridge.errors import ValidationError
from colab_runtime.notebook import check_package_spec

MODES = ("credentials", "runtime_url", "worker_url", "openai_base_url")
CONNECT_TIMEOUT, READ_TIMEOUT = 600.0, 60.0  # defaults of timeout and read_timeout (seconds)
_LAUNCH = {"tunnel", "ngrok_token", "model_id", "quantization", "port", "package_spec"}
_ALLOWED = {
    "credentials": {"accelerator", "manual", "redirect_uri", *_LAUNCH},
    "runtime_url": {"token", "headers", *_LAUNCH},
    "worker_url": {"worker_secret", "model_id", "quantization"},
    "openai_base_url": {"api_key"},
}


@dataclass(frozen=True)
class Common:
    """What every way takes: the worker's name (None: a default), the two timeouts."""

    name: str | None
    timeout: float
    read_timeout: float


@dataclass(frozen=True)
class Launch:
    """What a launch of the worker notebook takes (runtime_url and credentials)."""

    tunnel: str  # as given, else ngrok when there is a token, else none
    tunnel_given: bool
    ngrok_token: str
    model_id: str | None
    quantization: str
    port: int
    package_spec: str  # empty: the launch uploads this service's own wheel
    timeout: float

    def check(self, *, colab: bool) -> None:
        """A launch's tunnel needs its token; Colab needs a tunnel unless told ``tunnel: none``."""
        if colab and not self.ngrok_token and not self.tunnel_given:
            raise ValidationError("a Colab runtime is reached only through a tunnel: give "
                                  "ngrok_token (or tunnel none if this machine reaches the "
                                  "runtime directly)", details={"field": "ngrok_token"})
        if self.tunnel == "ngrok" and not self.ngrok_token:
            raise ValidationError("tunnel ngrok needs an ngrok_token (dashboard.ngrok.com)",
                                  details={"field": "ngrok_token"})


@dataclass(frozen=True)
class ColabConnect:
    common: Common
    client_id: str
    client_secret: str
    accelerator: str
    manual: bool
    redirect_uri: str | None
    launch: Launch
    mode = "credentials"


@dataclass(frozen=True)
class RuntimeConnect:
    common: Common
    runtime_url: str
    token: str | None
    headers: Mapping[str, str]
    launch: Launch
    mode = "runtime_url"


@dataclass(frozen=True)
class WorkerConnect:
    common: Common
    worker_url: str
    worker_secret: str
    model_id: str | None
    quantization: str
    mode = "worker_url"


@dataclass(frozen=True)
class OpenAIConnect:
    common: Common
    base_url: str
    api_key: str
    mode = "openai_base_url"


ConnectRequest = ColabConnect | RuntimeConnect | WorkerConnect | OpenAIConnect


@dataclass(frozen=True)
class Target:
    """What a connect attaches: a worker or OpenAI server, and what it holds for Colab."""

    name: str
    kind: str  # worker | openai
    url: str
    secret: str
    launched: bool = False
    colab: dict[str, Any] | None = None
    client: Any = None  # the Colab control-plane client
    keepalive: Any = None  # its started KeepAlive


def parse(body: Mapping[str, Any]) -> ConnectRequest:
    """The one way the body asks for (exactly one), checked; ``base_url`` is openai_base_url."""
    fields = dict(body)
    if "base_url" in fields and "openai_base_url" not in fields:
        fields["openai_base_url"] = fields.pop("base_url")
    given = [m for m in MODES if m in fields]
    if len(given) != 1:
        raise ValidationError(
            "give exactly one of credentials (Colab), runtime_url (a Jupyter runtime), "
            "worker_url (a running worker) or openai_base_url (an OpenAI-compatible server)",
            details={"given": given})
    mode = given[0]
    extra = sorted(set(fields) - _ALLOWED[mode] - {mode, "name", "timeout", "read_timeout"})
    if extra:
        raise ValidationError(f"{', '.join(extra)} cannot be used with {mode}",
                              details={"field": extra[0]})
    common = Common(fields.get("name"), float(fields.get("timeout") or CONNECT_TIMEOUT),
                    float(fields.get("read_timeout") or READ_TIMEOUT))
    if mode == "worker_url":
        if not fields.get("worker_secret"):
            raise ValidationError("worker_url needs the worker_secret the worker was started "
                                  "with", details={"field": "worker_secret"})
        return WorkerConnect(common, fields["worker_url"], fields["worker_secret"],
                             fields.get("model_id"), fields.get("quantization") or "none")
    if mode == "openai_base_url":
        return OpenAIConnect(common, fields["openai_base_url"], fields.get("api_key") or "")
    launch = _launch(fields, common)
    if mode == "runtime_url":
        launch.check(colab=False)
        return RuntimeConnect(common, fields["runtime_url"], fields.get("token"),
                              dict(fields.get("headers") or {}), launch)
    creds = fields["credentials"]
    return ColabConnect(common, creds["client_id"], creds["client_secret"],
                        str(fields.get("accelerator") or "T4"), bool(fields.get("manual")),
                        fields.get("redirect_uri"), launch)


def _launch(fields: Mapping[str, Any], common: Common) -> Launch:
    if "package_spec" in fields:
        check_package_spec(fields["package_spec"])
    token = fields.get("ngrok_token") or ""
    return Launch(
        tunnel=str(fields.get("tunnel") or ("ngrok" if token else "none")),
        tunnel_given=bool(fields.get("tunnel")), ngrok_token=token,
        model_id=fields.get("model_id"), quantization=fields.get("quantization") or "none",
        port=int(fields.get("port") or 0), package_spec=fields.get("package_spec") or "",
        timeout=common.timeout,
    )
