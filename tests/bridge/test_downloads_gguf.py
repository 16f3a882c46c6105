"""Choosing a GGUF repo's quantization file, as llama.cpp's ``-hf repo:quant`` does, and
refusing files that are not whole GGUFs."""

from __future__ import annotations

from pathlib import Path

import pytest

from bridge.downloads.ggufs import choose, gguf_facts, quant_of, repo_ggufs
from bridge.downloads.sources import DownloadError, source_from_request
from bridge.errors import ValidationError
from bridge.models.convert import find_default_gguf


@pytest.mark.parametrize(("name", "tag"), [
    ("SmolLM2-135M-Instruct.Q4_1.gguf", "Q4_1"),
    ("qwen2.5-0.5b-instruct-q4_k_m.gguf", "Q4_K_M"),
    ("Llama-3.2-1B-Instruct-IQ2_XXS.gguf", "IQ2_XXS"),
    ("model-f16.gguf", "F16"),
    ("Q8_0/Meta-Llama-3.1-70B-Q8_0-00001-of-00002.gguf", "Q8_0"),
    ("model.gguf", ""),
])
def test_the_quantization_tag_is_read_from_the_file_name(name: str, tag: str) -> None:
    assert quant_of(name) == tag


def test_choices_follow_llama_cpp() -> None:
    names = repo_ggufs(["README.md", "m.Q4_K_M.gguf", "m.Q8_0.gguf", "mmproj-m-f16.gguf",
                        "big/m-Q6_K-00001-of-00002.gguf", "big/m-Q6_K-00002-of-00002.gguf"])
    assert "mmproj-m-f16.gguf" not in names
    assert choose(names, file=None, quant=None, repo="o/r") == ["m.Q4_K_M.gguf"]  # the default
    assert choose(names, file=None, quant="q8_0", repo="o/r") == ["m.Q8_0.gguf"]
    assert choose(names, file="m.Q8_0.gguf", quant=None, repo="o/r") == ["m.Q8_0.gguf"]
    parts = ["big/m-Q6_K-00001-of-00002.gguf", "big/m-Q6_K-00002-of-00002.gguf"]
    assert choose(names, file=None, quant="Q6_K", repo="o/r") == parts  # every part
    assert choose(names, file=parts[0], quant=None, repo="o/r") == parts
    assert choose(["only.Q2_K.gguf"], file=None, quant=None, repo="o/r") == ["only.Q2_K.gguf"]


def test_a_missing_or_ambiguous_choice_names_what_there_is() -> None:
    names = ["m.Q4_0.gguf", "m.Q8_0.gguf"]
    for file, quant in ((None, None), (None, "Q5_K_M"), ("m.Q5_K_M.gguf", None)):
        with pytest.raises(ValidationError) as caught:
            choose(names, file=file, quant=quant, repo="o/r")
        assert caught.value.details["quantizations"] == ["Q4_0", "Q8_0"]
        assert "Q4_0, Q8_0" in caught.value.message
    with pytest.raises(ValidationError, match="no .gguf files"):
        choose([], file=None, quant="Q4_0", repo="o/r")


def test_a_repo_id_tag_is_the_quantization() -> None:
    source = source_from_request("x", {"repo_id": "o/r-GGUF:Q4_K_M"})
    assert (source.location, source.quant, source.file) == ("o/r-GGUF", "Q4_K_M", None)
    assert source_from_request("x", {"repo_id": "o/r", "file": "a.gguf"}).file == "a.gguf"
    for body in ({"repo_id": "o/r:Q4_0", "quantization": "Q8_0"},
                 {"repo_id": "o/r", "quantization": "Q8_0", "include": ["*.gguf"]},
                 {"repo_id": "o/r", "quantization": "Q8 0"},
                 {"repo_id": "o/r", "file": "../../a.gguf"},
                 {"source": "registry", "quantization": "Q8_0"}):
        with pytest.raises(ValidationError):
            source_from_request("smollm2-135m-instruct", body)


def test_only_a_whole_gguf_is_accepted(tmp_path: Path) -> None:
    real = find_default_gguf()
    facts = gguf_facts(real)
    assert (facts["format"], facts["gguf_type"], facts["family"], facts["size"]) == (
        "gguf", "Q4_1", "llama", "135M")
    data = real.read_bytes()
    for name, content, says in (("empty.gguf", b"", "not a GGUF"),
                                ("magic.gguf", b"GGUF", "cut short"),
                                ("ggml.gguf", b"ggml" + data[4:4096], "not a GGUF"),
                                ("half.gguf", data[:len(data) // 2], "not a whole GGUF")):
        path = tmp_path / name
        path.write_bytes(content)
        with pytest.raises(DownloadError, match=says) as caught:
            gguf_facts(path)
        assert caught.value.error_type == "INVALID_MODEL"
