# Copyright (C) 2026 anomalib-promptmad developers
# SPDX-License-Identifier: Apache-2.0

"""Picture of every synthetic defect family on real images, with its label outlined and the foreground.

One row per category (bottle, pill, transistor from MVTec AD, tire from MVTec 3D-AD, where they are beside
the project), one column per family; the first column shows the estimated foreground (the object mask
defects are placed on). Each defect's label (its visibly changed pixels) is outlined in yellow. Columns of
the families held out of training for validation are titled in orange, opt-in families (in neither default
mix) in grey.

Usage:
    python scripts/synthetic_families.py [--out docs/images/synthetic_families.png] [--cell 128]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F  # noqa: N812
from PIL import Image, ImageDraw

from anomalib_promptmad.data.synthetic import (
    FAMILY_NAMES,
    OPT_IN_FAMILIES,
    VALIDATION_FAMILIES,
    AnomalySynthesizer,
    category_foregrounds,
    foreground_batch,
)

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
CATEGORIES = {
    "bottle": DATA / "mvtec_ad_256" / "bottle",
    "pill": DATA / "mvtec_ad_256" / "pill",
    "transistor": DATA / "mvtec_ad_256" / "transistor",
    "tire": DATA / "mvtec_3d_ad_rgb_256" / "tire",
}


def _read(path: Path) -> torch.Tensor:
    return torch.from_numpy(np.array(Image.open(path).convert("RGB"))).permute(2, 0, 1).float() / 255


def _outline(mask: torch.Tensor) -> torch.Tensor:
    """``(H, W)`` bool boundary pixels of a mask."""
    m = mask.float()[None, None]
    eroded = -F.max_pool2d(-m, 3, 1, 1)
    return (m - eroded)[0, 0] > 0


def main() -> None:
    """Render the picture."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("docs/images/synthetic_families.png"))
    parser.add_argument("--cell", type=int, default=128)
    parser.add_argument("--seed", type=int, default=3)
    args = parser.parse_args()
    found = {name: root for name, root in CATEGORIES.items() if (root / "train" / "good").is_dir()}
    if not found:
        raise SystemExit(f"no real categories under {DATA}")
    paths = {name: sorted((root / "train" / "good").glob("*.png")) for name, root in found.items()}
    foregrounds = category_foregrounds(
        [str(p) for ps in paths.values() for p in ps], lambda p: Path(p).parts[-4], reader=lambda p: _read(Path(p))
    )
    names = list(found)
    images = torch.stack([_read(paths[name][0]) for name in names])
    height, width = images.shape[-2:]
    foreground = foreground_batch([foregrounds[name] for name in names], height, width)
    categories = torch.arange(len(names))
    cell, title = args.cell, 16
    canvas = Image.new("RGB", (cell * (len(FAMILY_NAMES) + 1), title + cell * len(names)), "white")
    draw = ImageDraw.Draw(canvas)
    columns = [("foreground", None), *[(family, family) for family in FAMILY_NAMES]]
    for column, (label, family) in enumerate(columns):
        colour = (230, 120, 0) if family in VALIDATION_FAMILIES else (0, 0, 0)
        if family in OPT_IN_FAMILIES:
            colour = (140, 140, 140)
        draw.text((column * cell + 3, 2), label, fill=colour)
        if family is None:
            shown = images.clone()
            masks = foreground if foreground is not None else torch.ones(len(names), 1, height, width, dtype=torch.bool)
            shown = torch.where(masks, shown, shown * 0.35)
        else:
            result = AnomalySynthesizer(families=[family]).synthesize(
                images, torch.Generator().manual_seed(args.seed), foreground, categories=categories
            )
            shown, masks = result.images.clone(), result.masks.bool()
            for row in range(len(names)):
                edge = _outline(masks[row, 0])
                shown[row][:, edge] = torch.tensor([1.0, 0.9, 0.0]).view(3, 1)
        for row in range(len(names)):
            tile = (shown[row].permute(1, 2, 0).clamp(0, 1).numpy() * 255).astype(np.uint8)
            canvas.paste(Image.fromarray(tile).resize((cell, cell), Image.Resampling.LANCZOS),
                         (column * cell, title + row * cell))
    for row, name in enumerate(names):
        draw.text((3, title + row * cell + 3), name, fill=(255, 255, 0))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    canvas.quantize(colors=256, method=Image.Quantize.MEDIANCUT).save(args.out, optimize=True)
    print(f"wrote {args.out} ({args.out.stat().st_size // 1024} KB)")


if __name__ == "__main__":
    main()
