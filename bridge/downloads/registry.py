"""The built-in registry: model ids this service knows how to fetch from the Hugging Face Hub."""

from __future__ import annotations

from dataclasses import dataclass

from bridge.config import DEFAULT_MODEL_ID


@dataclass(frozen=True)
class RegistryEntry:
    """A model id this service knows how to fetch from the Hugging Face Hub."""

    repo_id: str
    name: str
    family: str
    size: str
    revision: str = "main"


REGISTRY: dict[str, RegistryEntry] = {
    DEFAULT_MODEL_ID: RegistryEntry(
        "HuggingFaceTB/SmolLM2-135M-Instruct", "SmolLM2 135M Instruct", "SmolLM2", "135M"
    ),
    "smollm2-360m-instruct": RegistryEntry(
        "HuggingFaceTB/SmolLM2-360M-Instruct", "SmolLM2 360M Instruct", "SmolLM2", "360M"
    ),
    "smollm2-1.7b-instruct": RegistryEntry(
        "HuggingFaceTB/SmolLM2-1.7B-Instruct", "SmolLM2 1.7B Instruct", "SmolLM2", "1.7B"
    ),
    "qwen2.5-0.5b-instruct": RegistryEntry(
        "Qwen/Qwen2.5-0.5B-Instruct", "Qwen2.5 0.5B Instruct", "Qwen2.5", "0.5B"
    ),
    "tinyllama-1.1b-chat": RegistryEntry(
        "TinyLlama/TinyLlama-1.1B-Chat-v1.0", "TinyLlama 1.1B Chat", "Llama", "1.1B"
    ),
    "llama2-7b": RegistryEntry(  # FT's example id; a gated repo: needs HF_TOKEN
        "meta-llama/Llama-2-7b-chat-hf", "LLaMA 2", "Llama", "7B"
    ),
}
