# Copyright (C) 2026 anomalib-promptmad developers
# SPDX-License-Identifier: Apache-2.0

"""Tests of the text encoders: packaged MiniLM, open_clip (random / checkpoint file), specs and "auto"."""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from pathlib import Path

import huggingface_hub
import open_clip
import pytest
import torch
import torch.nn.functional as F  # noqa: N812

from anomalib_promptmad.prompts import (
    OpenCLIPTextEncoder,
    PackagedSentenceEncoder,
    TextEncoder,
    build_text_encoder,
    clear_text_encoder_cache,
)
from anomalib_promptmad.prompts import text_encoder as text_encoder_module

SMALL_CLIP = "ViT-S-32-alt"  # smallest open_clip text tower (256-d), for checkpoint round trips


def _cosine(embeddings: torch.Tensor, i: int, j: int) -> float:
    return float(embeddings[i] @ embeddings[j])


def _assert_unit_rows(embeddings: torch.Tensor, n: int, dim: int) -> None:
    assert embeddings.shape == (n, dim)
    assert embeddings.dtype == torch.float32
    torch.testing.assert_close(embeddings.norm(dim=-1), torch.ones(n))


@pytest.fixture
def empty_hub_cache(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """An empty Hugging Face cache, offline, where any download attempt fails the test."""
    cache = tmp_path / "hf_cache"
    cache.mkdir()
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")

    def no_network(*args: object, **kwargs: object) -> None:
        pytest.fail(f"tried to download weights while offline: {args} {kwargs}")

    monkeypatch.setattr(open_clip.pretrained, "download_pretrained", no_network)
    monkeypatch.setattr(open_clip.pretrained, "hf_hub_download", no_network)
    return cache


@pytest.fixture
def fresh_auto() -> Iterator[None]:
    """Forget memoised encoders around a test of "auto"."""
    clear_text_encoder_cache()
    yield
    clear_text_encoder_cache()


def test_minilm_is_offline_normalised_and_meaningful(minilm: TextEncoder) -> None:
    """The packaged encoder gives unit 384-d vectors that reflect meaning."""
    assert isinstance(minilm, PackagedSentenceEncoder)
    assert minilm.name == "minilm"
    embeddings = minilm.encode(
        ["a photo of a cracked tile", "a photo of a broken tile", "a photo of a sunny beach"],
    )
    _assert_unit_rows(embeddings, 3, 384)
    assert _cosine(embeddings, 0, 1) > _cosine(embeddings, 0, 2) + 0.3


def test_cache_skips_the_model_for_known_sentences(minilm: TextEncoder, monkeypatch: pytest.MonkeyPatch) -> None:
    """Cached sentences never reach the model again."""
    calls: list[list[str]] = []
    run_model = minilm._encode_batch

    def counting(sentences: list[str]) -> torch.Tensor:
        calls.append(list(sentences))
        return run_model(sentences)

    monkeypatch.setattr(minilm, "_encode_batch", counting)
    sentences = ["a photo of a cache test widget.", "a photo of a dented cache test widget."]
    first = minilm.encode([*sentences, sentences[0]])
    assert calls == [sentences]
    second = minilm.encode(sentences)
    assert len(calls) == 1
    torch.testing.assert_close(second, first[:2])
    torch.testing.assert_close(first[2], first[0])
    minilm.encode([sentences[1], "a photo of a new cache test widget."])
    assert calls[1] == ["a photo of a new cache test widget."]


def test_encode_rejects_a_single_string_and_accepts_nothing(minilm: TextEncoder) -> None:
    """encode() rejects a bare string and non-strings; empty input is fine."""
    with pytest.raises(TypeError, match="single string"):
        minilm.encode("a photo of a bottle.")
    with pytest.raises(TypeError, match="expects strings"):
        minilm.encode(["a photo", 3])  # type: ignore[list-item]
    assert minilm.encode([]).shape == (0, 384)


def test_open_clip_vit_b16_random_weights() -> None:
    """ViT-B-16 with random weights gives unit 512-d vectors equal to open_clip's own."""
    encoder = build_text_encoder("open_clip:ViT-B-16:none")
    assert isinstance(encoder, OpenCLIPTextEncoder)
    assert encoder.name == "open_clip:ViT-B-16:none"
    assert encoder.model.visual is None  # the image tower is dropped
    sentences = ["a photo of a flawless transistor.", "a photo of a transistor with a bent lead."]
    embeddings = encoder.encode(sentences)
    _assert_unit_rows(embeddings, 2, 512)
    # Encoding on a context trimmed to the longest sentence equals open_clip's full 77-token pass.
    with torch.no_grad():
        reference = F.normalize(encoder.model.encode_text(encoder.tokenizer(sentences)), dim=-1)
    torch.testing.assert_close(embeddings, reference, atol=1e-5, rtol=1e-4)
    assert build_text_encoder(" open_clip:ViT-B-16:None ") is encoder  # one load per spec


def test_open_clip_loads_a_local_checkpoint(tmp_path: Path) -> None:
    """A checkpoint file given by path is loaded and reproduces its model."""
    source = open_clip.create_model(SMALL_CLIP, pretrained=None).eval()
    with torch.no_grad():
        for parameter in source.parameters():
            parameter.normal_(std=0.05)  # weights unlike a fresh random init
    # fp16 on disk halves the file; the reference uses the same rounded weights.
    source = source.half().float()
    checkpoint = tmp_path / "text_clip.bin"
    torch.save({name: value.half() for name, value in source.state_dict().items()}, checkpoint)

    encoder = build_text_encoder(f"open_clip:{SMALL_CLIP}:{checkpoint}")
    assert encoder.name == f"open_clip:{SMALL_CLIP}:{checkpoint}"
    sentences = ["a photo of a cracked tile.", "a photo of a flawless tile."]
    with torch.no_grad():
        reference = F.normalize(source.encode_text(open_clip.get_tokenizer(SMALL_CLIP)(sentences)), dim=-1)
    embeddings = encoder.encode(sentences)
    _assert_unit_rows(embeddings, 2, 256)
    torch.testing.assert_close(embeddings, reference, atol=1e-5, rtol=1e-4)


def test_missing_checkpoint_names_the_path(tmp_path: Path) -> None:
    """A missing checkpoint file is reported with its path."""
    missing = tmp_path / "no_such_checkpoint.bin"
    with pytest.raises(FileNotFoundError, match=r"no_such_checkpoint\.bin"):
        build_text_encoder(f"open_clip:{SMALL_CLIP}:{missing}")


@pytest.mark.parametrize(
    ("spec", "error", "match"),
    [
        ("clip", ValueError, "Unknown text encoder spec 'clip'"),
        ("open_clip:ViT-B-16", ValueError, "valid specs"),
        ("open_clip::openai", ValueError, "valid specs"),
        ("open_clip:No-Such-Arch:none", ValueError, "Unknown open_clip architecture 'No-Such-Arch'"),
        (3, TypeError, "must be a string"),
    ],
)
def test_bad_specs_are_rejected(spec: object, error: type[Exception], match: str) -> None:
    """Malformed or unknown specs raise clear errors."""
    with pytest.raises(error, match=match):
        build_text_encoder(spec)  # type: ignore[arg-type]


def test_pretrained_tag_offline_without_cache_fails_fast(empty_hub_cache: Path) -> None:
    """An uncached tag fails at once offline, without any download."""
    with pytest.raises(FileNotFoundError, match="HF_HUB_OFFLINE=1") as info:
        OpenCLIPTextEncoder("ViT-B-16", "openai")
    assert "timm/vit_base_patch16_clip_224.openai" in str(info.value)


@pytest.mark.usefixtures("fresh_auto")
def test_auto_offline_falls_back_to_minilm_with_one_warning(
    empty_hub_cache: Path, network_attempts: list[object]
) -> None:
    """'auto' offline without CLIP weights uses MiniLM and warns once, without trying the network."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        encoder = build_text_encoder("auto")
        again = build_text_encoder("AUTO")
    assert network_attempts == []
    assert isinstance(encoder, PackagedSentenceEncoder)
    assert again is encoder
    assert build_text_encoder("minilm") is encoder
    user_warnings = [w for w in caught if issubclass(w.category, UserWarning)]
    assert len(user_warnings) == 1
    message = str(user_warnings[0].message)
    for part in ("'minilm'", "ViT-B-16/openai", "HF_HUB_OFFLINE=1", "'open_clip:ViT-B-16:openai'"):
        assert part in message


@pytest.mark.usefixtures("fresh_auto")
def test_auto_prefers_clip_weights_found_in_the_hub_cache(
    empty_hub_cache: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """'auto' picks CLIP ViT-B-16/openai when the hub cache holds its weights."""
    # The layout huggingface_hub writes: refs/main names the snapshot holding the file.
    repo = empty_hub_cache / "models--timm--vit_base_patch16_clip_224.openai"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text("0123abcd")
    weights = repo / "snapshots" / "0123abcd" / "open_clip_model.safetensors"
    weights.parent.mkdir(parents=True)
    weights.write_bytes(b"not real weights")

    loaded: list[Path] = []
    create_model = open_clip.create_model

    def fake_create_model(model_name: str, pretrained: str, force_quick_gelu: bool) -> torch.nn.Module:
        loaded.append(Path(pretrained))
        assert model_name == "ViT-B-16"
        assert force_quick_gelu  # the OpenAI tag's activation
        return create_model(model_name, pretrained=None, force_quick_gelu=force_quick_gelu)

    monkeypatch.setattr(open_clip, "create_model", fake_create_model)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no fallback warning
        encoder = build_text_encoder("auto")
    assert isinstance(encoder, OpenCLIPTextEncoder)
    assert encoder.name == "open_clip:ViT-B-16:openai"
    assert loaded == [weights]
    assert text_encoder_module._hub_offline()


@pytest.mark.usefixtures("fresh_auto")
def test_auto_without_network_falls_back_at_once_when_the_hub_cannot_be_reached(
    empty_hub_cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Not marked offline, but air-gapped: one failed connection, no download attempt, the fallback (issue 14)."""
    import socket

    from anomalib_promptmad.prompts import text_encoder as module

    monkeypatch.setattr(module, "_hub_offline", lambda: False)  # HF_HUB_OFFLINE unset
    for name in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy", "HF_ENDPOINT"):
        monkeypatch.delenv(name, raising=False)
    attempts: list[object] = []

    def unreachable(address: object, timeout: float | None = None, *args: object) -> None:
        attempts.append((address, timeout))
        raise OSError("Network is unreachable")

    monkeypatch.setattr(socket, "create_connection", unreachable)
    with pytest.warns(UserWarning, match=r"huggingface\.co cannot be reached .*HF_HUB_OFFLINE=1"):
        encoder = build_text_encoder("auto")
    assert isinstance(encoder, PackagedSentenceEncoder)
    assert attempts == [(("huggingface.co", 443), module._HUB_PROBE_TIMEOUT_S)]  # one probe, short timeout
