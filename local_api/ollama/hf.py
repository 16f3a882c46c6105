"""Ollama's Hugging Face model names: ``hf.co/{owner}/{repo}[:{quant}]`` (or ``huggingface.co/``).

Ollama pulls a GGUF repo's quantization by such a name (its docs, "Use Ollama with any GGUF
model on Hugging Face Hub"; no tag means ``latest``: Q4_K_M when the repo has it, else what it
offers, the rule of bridge/downloads/ggufs.py). Here the name maps one-to-one onto a
catalog id, ``{host}--{owner}--{repo}[--{quant}]`` (the Hub refuses ``--`` in repo ids, so
the map reverses), so /tags lists the model under the name pulled and /chat, /show find it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from bridge import errors
from bridge.downloads.sources import QUANT

HOSTS = ("hf.co", "huggingface.co")
_PART = re.compile(r"^[A-Za-z0-9][\w.-]{0,95}$")
SEP = "--"


@dataclass(frozen=True)
class HfName:
    host: str
    owner: str
    repo: str
    quant: str | None  # None: Ollama's ``latest``

    @property
    def repo_id(self) -> str:
        return f"{self.owner}/{self.repo}"

    @property
    def model_id(self) -> str:
        """The catalog id this name is stored under."""
        parts = [self.host, self.owner, self.repo] + ([self.quant] if self.quant else [])
        return SEP.join(parts)

    @property
    def name(self) -> str:
        """The name as Ollama lists it (``:latest`` when no quantization was named)."""
        return f"{self.host}/{self.repo_id}:{self.quant or 'latest'}"


def _invalid(name: str, why: str) -> errors.ValidationError:
    # Ollama answers a name it cannot parse with 400 "invalid model name" (server/routes.go).
    return errors.ValidationError(f"invalid model name {name!r}: {why}",
                                  details={"field": "model"})


def is_hf(name: str) -> bool:
    return name.split("/", 1)[0].lower() in HOSTS and "/" in name


def parse(name: str) -> HfName:
    """The parts of an ``hf.co/owner/repo[:quant]`` name; 400 when it is malformed."""
    host, _, rest = name.partition("/")
    path, _, tag = rest.partition(":")
    owner, _, repo = path.partition("/")
    if not _PART.match(owner) or not _PART.match(repo) or "/" in repo:
        raise _invalid(name, f"expected {host.lower()}/{{owner}}/{{repo}}[:{{quantization}}]")
    if any(SEP in p or ".." in p for p in (owner, repo)):
        raise _invalid(name, "a Hugging Face repo id holds no '--' or '..'")
    quant = None if tag.lower() in ("", "latest") else tag
    if quant is not None and (not QUANT.match(quant) or SEP in quant):
        raise _invalid(name, "the tag must be a quantization like Q4_K_M")
    parsed = HfName(host.lower(), owner, repo, quant)
    if len(parsed.model_id) > 128:
        raise _invalid(name, "the name is too long")
    return parsed


def from_model_id(model_id: str) -> HfName | None:
    """The Ollama name a catalog id stands for, None for the service's own ids."""
    parts = model_id.split(SEP)
    if len(parts) not in (3, 4) or parts[0] not in HOSTS:
        return None
    return HfName(parts[0], parts[1], parts[2], parts[3] if len(parts) == 4 else None)


def ollama_name(model_id: str) -> str:
    """How Ollama names a catalog id: ``hf.co/owner/repo:Q8_0`` for a pulled repo, else the id."""
    found = from_model_id(model_id)
    return found.name if found is not None else model_id


def model_id(name: str) -> str:
    """The catalog id for an Ollama name; an hf.co name that does not parse stays as it is
    (not found, as an unknown model)."""
    if is_hf(name):
        try:
            return parse(name).model_id
        except errors.ValidationError:
            return name
    return name.removesuffix(":latest")
