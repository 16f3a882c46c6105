"""A Hugging Face repo as a file plan, read through huggingface_hub (HF_ENDPOINT honoured).

``model_info(files_metadata=True)`` gives the commit and, per file, its size and the digest
the Hub vouches for (LFS sha256, else the git blob id); files are then fetched from
``resolve/<commit>/<name>`` so a resumed download never mixes two revisions.
"""

from __future__ import annotations

from pathlib import PurePosixPath
from typing import Any

from bridge.downloads import ggufs
from bridge.downloads.sources import (
    ACCESS_DENIED,
    INVALID_MODEL,
    NETWORK_ERROR,
    NETWORK_HINT,
    NOT_FOUND,
    DownloadError,
    Plan,
    RemoteFile,
    Source,
    http_failure,
    safe_name,
    select_files,
)

# What to try when the Hub does not answer (the download guide's troubleshooting, in short)
HUB_HINT = (f"{NETWORK_HINT}; where the Hub is blocked, use a mirror (HF_ENDPOINT="
            "https://hf-mirror.com); a gated or private repo needs HF_TOKEN; or add the model "
            "from a folder on this machine ({\"source\": \"path\"}) or a URL")


def hub_endpoint(endpoint: str | None) -> str:
    """The configured endpoint, else huggingface_hub's own (its HF_ENDPOINT or the Hub)."""
    from huggingface_hub import constants

    return (endpoint or constants.ENDPOINT).rstrip("/")


def hub_headers() -> dict[str, str]:
    """huggingface_hub's request headers: its user agent and the HF_TOKEN if one is set."""
    from huggingface_hub.utils._headers import build_hf_headers

    return {**build_hf_headers(), "Accept-Encoding": "identity"}


def _transport_errors() -> tuple[type[BaseException], ...]:
    """The HTTP client errors huggingface_hub may raise (its client differs by version)."""
    found: list[type[BaseException]] = []
    for module in ("httpx2", "httpx", "requests"):
        try:
            mod = __import__(module)
        except ImportError:
            continue
        cls = getattr(mod, "TransportError", None) or getattr(mod, "RequestException", None)
        if isinstance(cls, type) and issubclass(cls, BaseException):
            found.append(cls)
    return tuple(found)


def _names(names: list[str], source: Source) -> list[str]:
    """The repo files to fetch: one quantization of a GGUF repo (a choice was named, or the
    repo holds no transformers model), else what a transformers folder needs."""
    found = ggufs.repo_ggufs(names)
    if source.file or source.quant or (found and not source.include
                                       and not ggufs.has_hf_weights(names)):
        chosen = ggufs.choose(found, file=source.file, quant=source.quant, repo=source.location)
        return [safe_name(n) for n in chosen]
    return select_files(names, source.include)


def resolve_repo(source: Source, *, endpoint: str | None, timeout: float) -> Plan:
    """Files, sizes and digests of ``source.location`` at ``source.revision``."""
    from huggingface_hub import HfApi, hf_hub_url
    from huggingface_hub.errors import (
        GatedRepoError,
        HfHubHTTPError,
        OfflineModeIsEnabled,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    base = hub_endpoint(endpoint)
    repo, what = source.location, f"Hugging Face repo {source.location}"
    try:
        info: Any = HfApi(endpoint=base).model_info(
            repo, revision=source.revision, files_metadata=True, timeout=timeout
        )
    except GatedRepoError as exc:  # a subclass of RepositoryNotFoundError: test it first
        raise DownloadError(ACCESS_DENIED, f"{what} is gated: accept its terms on the Hub and "
                            "set HF_TOKEN", repo_id=repo) from exc
    except (RepositoryNotFoundError, RevisionNotFoundError) as exc:
        raise DownloadError(NOT_FOUND, f"{what} (revision {source.revision}) was not found "
                            f"at {base}", repo_id=repo) from exc
    except HfHubHTTPError as exc:
        status = exc.response.status_code if exc.response is not None else 0
        raise http_failure(status, what) from exc
    except OfflineModeIsEnabled as exc:
        raise DownloadError(NETWORK_ERROR, f"{what}: HF_HUB_OFFLINE is set") from exc
    except _transport_errors() as exc:
        raise DownloadError(NETWORK_ERROR, f"Cannot reach the Hugging Face Hub at {base} "
                            f"({type(exc).__name__}): {HUB_HINT}", repo_id=repo) from exc
    commit = info.sha or source.revision
    siblings = {s.rfilename: s for s in info.siblings or []}
    names = _names(sorted(siblings), source)
    if not names:
        raise DownloadError(INVALID_MODEL, f"{what} has no model files to download", repo_id=repo)
    files = []
    for name in names:
        sib = siblings[name]
        lfs = sib.lfs
        files.append(RemoteFile(
            name=PurePosixPath(name).name if name.endswith(".gguf") else name,
            url=hf_hub_url(repo, name, revision=commit, endpoint=base),
            size=lfs.size if lfs else sib.size,
            sha256=lfs.sha256 if lfs else None,
            git_sha1=None if lfs else sib.blob_id,
            etag_is_digest=True,
        ))
    meta = {"name": repo.split("/")[-1], "family": "", "size": "",
            "source": f"hf:{repo}@{commit}", **source.meta}
    return Plan(files, commit, meta)
