"""GGUF repos and files: which quantization file to fetch, and whether a fetched file is whole.

A GGUF repo publishes one model in several quantization files (``x.Q4_K_M.gguf``,
``x.Q8_0.gguf``, ...). The choice follows llama.cpp's ``-hf owner/repo[:quant]`` (common/arg.cpp,
``common_get_hf_file``) and Ollama's ``hf.co/owner/repo:quant``: a tag picks the file whose
name carries it (case-insensitive), an exact ``file`` name picks that file, and no choice
takes Q4_K_M when the repo has it, else the repo's only GGUF; anything else is an error that
lists the quantizations available. A fetched GGUF is read whole with the ``gguf`` package
(llama.cpp's own reader) before it is registered: a bad magic or a truncated file is refused.
"""

from __future__ import annotations

import re
from pathlib import Path, PurePosixPath
from typing import Any

from bridge.downloads.sources import INVALID_MODEL, DownloadError
from bridge.errors import ValidationError
from bridge.models.store import OLLAMA_PARAMETERS

MAGIC = b"GGUF"
HEADER_BYTES = 24  # magic, version (u32), tensor count (u64), metadata count (u64)
DEFAULT_QUANT = "Q4_K_M"  # llama.cpp's and Ollama's pick when none is named
_TAG = re.compile(r"(?i)(?:^|[-_.])((?:I?Q\d+(?:_[A-Z0-9]+)*)|BF16|F16|FP16|F32)(?=[-_.]|$)")
_SPLIT = re.compile(r"-(\d{5})-of-(\d{5})\.gguf$", re.IGNORECASE)


def quant_of(name: str) -> str:
    """The quantization tag a file name carries (``Q4_K_M``), upper case; "" when none."""
    stem = _SPLIT.sub("", PurePosixPath(name).name)
    stem = stem[:-5] if stem.lower().endswith(".gguf") else stem
    found = _TAG.findall(stem)
    return found[-1].upper() if found else ""


def repo_ggufs(names: list[str]) -> list[str]:
    """The model GGUF files of a repo (vision projectors ``mmproj*`` left out)."""
    return sorted(n for n in names if n.lower().endswith(".gguf")
                  and not PurePosixPath(n).name.lower().startswith("mmproj"))


def has_hf_weights(names: list[str]) -> bool:
    """Whether a repo holds a transformers model (config and safetensors/bin weights)."""
    return "config.json" in names and any(n.endswith((".safetensors", ".bin")) for n in names)


def _available(ggufs: list[str]) -> dict[str, list[str]]:
    by_quant: dict[str, list[str]] = {}
    for name in ggufs:
        by_quant.setdefault(quant_of(name) or PurePosixPath(name).name, []).append(name)
    return by_quant


def _refuse(field: str, message: str, ggufs: list[str]) -> ValidationError:
    found = _available(ggufs)
    return ValidationError(message + f"; available: {', '.join(sorted(found)) or 'none'}",
                           details={"field": field, "quantizations": sorted(found),
                                    "files": ggufs})


def choose(ggufs: list[str], *, file: str | None, quant: str | None, repo: str) -> list[str]:
    """The repo files to fetch for one quantization (several when it is split in parts)."""
    if not ggufs:
        raise ValidationError(f"Hugging Face repo {repo} has no .gguf files to choose from",
                              details={"field": "file" if file else "quantization"})
    if file:
        if file not in ggufs:
            raise _refuse("file", f"Repo {repo} has no GGUF file {file!r}", ggufs)
        match = _SPLIT.search(file)
        if match is None:
            return [file]
        head = file[:match.start()]
        return [n for n in ggufs if n.startswith(head) and _SPLIT.search(n)]
    found = _available(ggufs)
    if quant:
        picked = found.get(quant.upper())
        if picked is None:
            raise _refuse("quantization", f"Repo {repo} has no {quant} quantization", ggufs)
    elif DEFAULT_QUANT in found:
        picked = found[DEFAULT_QUANT]
    elif len(found) == 1:
        picked = next(iter(found.values()))
    else:
        raise _refuse("quantization", f"Repo {repo} has {len(found)} quantizations: name one "
                      f"(\"quantization\": \"Q4_0\", or repo_id \"{repo}:Q4_0\") or a \"file\"",
                      ggufs)
    if len(picked) > 1 and not all(_SPLIT.search(n) for n in picked):
        raise _refuse("file", f"Repo {repo} has several {quant or DEFAULT_QUANT} files: name "
                      "the one to fetch as \"file\"", ggufs)
    return picked


def gguf_facts(path: Path) -> dict[str, Any]:
    """Catalog facts of a whole GGUF file; INVALID_MODEL when it is not one or is cut short."""
    from gguf import GGUFReader, LlamaFileType

    size = path.stat().st_size
    with path.open("rb") as handle:
        head = handle.read(HEADER_BYTES)
    if head[:4] != MAGIC:
        raise DownloadError(INVALID_MODEL, f"{path.name} is not a GGUF file (its first bytes "
                            f"are {head[:4]!r}, not {MAGIC!r})", file=path.name)
    if size <= HEADER_BYTES:
        raise DownloadError(INVALID_MODEL, f"{path.name} is cut short ({size} bytes)",
                            file=path.name)
    try:
        reader = GGUFReader(path)
        # Every tensor's bytes lie inside the file (the reader maps them; a cut file fails).
        end = max((t.data_offset + int(t.n_bytes) for t in reader.tensors), default=0)
        fields = {k: reader.fields[k].contents() for k in (
            "general.architecture", "general.size_label", "general.file_type")
            if k in reader.fields}  # fmt: skip
        del reader
    except Exception as exc:  # the reader raises ValueError/IndexError/struct.error alike
        raise DownloadError(INVALID_MODEL, f"{path.name} is not a whole GGUF file "
                            f"({type(exc).__name__}: {str(exc)[:120]})", file=path.name) from exc
    if end > size:
        raise DownloadError(INVALID_MODEL, f"{path.name} is cut short: {size} bytes, its "
                            f"tensors need {end}", file=path.name)
    quant = quant_of(path.name)
    file_type = fields.get("general.file_type")
    if isinstance(file_type, int):
        try:
            quant = LlamaFileType(file_type).name.removeprefix("MOSTLY_") or quant
        except ValueError:
            pass
    facts: dict[str, Any] = {"format": "gguf", "framework": "llama.cpp",
                             "quantization": ["none"], "gguf_type": quant,
                             "parameters": dict(OLLAMA_PARAMETERS)}
    if isinstance(fields.get("general.architecture"), str):
        facts["family"] = fields["general.architecture"]
    if isinstance(fields.get("general.size_label"), str):
        facts["size"] = fields["general.size_label"]
    return facts


def folder_facts(folder: Path) -> dict[str, Any]:
    """Facts of the GGUF files in a fetched folder (each checked whole); {} when none."""
    facts: dict[str, Any] = {}
    for path in sorted(folder.rglob("*.gguf")):
        found = gguf_facts(path)
        facts = facts or found  # the first part of a split model describes it
    return facts
