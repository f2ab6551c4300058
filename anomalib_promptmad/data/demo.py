# Copyright (C) 2026 anomalib-promptmad developers
# SPDX-License-Identifier: Apache-2.0

"""Generate a small synthetic multi-category dataset in the MVTec AD layout.

The demo data lets every example, test and notebook run offline in seconds. Each category is a
procedurally drawn scene with natural per-image variation (position, orientation, lighting, sensor
noise) and at least two defect types with exact masks (the mask is 1 exactly where the defect
changed the drawing, before sensor noise):

=========  ===========================================  ==========================
category   normal appearance                            defect types
=========  ===========================================  ==========================
disc       brushed metal disc with rings and a hole     ``scratch``, ``missing``
fabric     woven fabric with coloured stripes           ``stain``, ``hole``
circuit    green circuit board, copper grid and pads    ``missing``, ``spot``
=========  ===========================================  ==========================

Layout written (``<root>/prompts.yaml`` holds the categories' prompt catalog, version 1)::

    <root>/<category>/train/good/000.png
    <root>/<category>/test/good/000.png
    <root>/<category>/test/<defect>/000.png
    <root>/<category>/ground_truth/<defect>/000_mask.png

Example:
    >>> from anomalib_promptmad.data.demo import generate_demo_dataset
    >>> root = generate_demo_dataset("./datasets/promptmad_demo")  # doctest: +SKIP

Command line::

    promptmad-demo-data --root ./datasets/promptmad_demo --image-size 128
"""

from __future__ import annotations

import argparse
import math
import shutil
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import yaml
from PIL import Image, ImageDraw
from tqdm import tqdm

from anomalib_promptmad.infrastructure.atomic_write import default_folder_mode

__all__ = ["DEMO_CATEGORIES", "DemoCategory", "generate_demo_dataset", "main"]

Array = np.ndarray


@dataclass(frozen=True)
class _Scene:
    """A rendered normal image ``(S, S, 3)`` in [0, 1] and the geometry defects need."""

    image: Array
    region: Array  # (S, S) bool: where defects may appear (the object, or the whole texture)
    params: dict[str, Any]


@dataclass(frozen=True)
class DemoCategory:
    """A demo category: how to draw it, its defects and how to describe it in prompts.

    Attributes:
        render (Callable): ``(rng, size) -> _Scene`` drawing one normal image.
        defects (dict[str, Callable]): defect type -> ``(scene, rng) -> (image, mask)``.
        object_noun (str): Noun phrase of the prompt catalog (``{object}``).
        normal (tuple[str, ...]): Normal-state phrases, each holding ``{object}``.
        defect_phrases (dict[str, tuple[str, ...]]): defect type -> phrases holding ``{object}``.
    """

    render: Callable[[np.random.Generator, int], _Scene]
    defects: dict[str, Callable[[_Scene, np.random.Generator], tuple[Array, Array]]]
    object_noun: str
    normal: tuple[str, ...]
    defect_phrases: dict[str, tuple[str, ...]]


# --------------------------------------------------------------------------- drawing helpers


def _grid(size: int) -> tuple[Array, Array]:
    """Pixel-centre coordinates ``(y, x)`` in [0, 1), each ``(S, S)``."""
    coords = (np.arange(size, dtype=np.float32) + 0.5) / size
    return np.meshgrid(coords, coords, indexing="ij")


def _finish(image: Array, rng: np.random.Generator) -> Array:
    """Lighting gradient and sensor noise: the natural variation between two normal images."""
    size = image.shape[0]
    yy, xx = _grid(size)
    angle = rng.uniform(0, 2 * math.pi)
    gradient = 1.0 + rng.uniform(0.0, 0.12) * (np.cos(angle) * (xx - 0.5) + np.sin(angle) * (yy - 0.5))
    gain = rng.uniform(0.95, 1.05)
    noise = rng.normal(0.0, rng.uniform(0.006, 0.015), image.shape).astype(np.float32)
    return np.clip(image * (gain * gradient)[..., None] + noise, 0.0, 1.0)


def _polyline_mask(size: int, points: Sequence[tuple[float, float]], width: float) -> Array:
    """Rasterise a polyline (points as fractions of the side, ``(x, y)``) of ``width`` pixels."""
    canvas = Image.new("L", (size, size), 0)
    pixels = [(x * size, y * size) for x, y in points]
    ImageDraw.Draw(canvas).line(pixels, fill=255, width=max(1, round(width)), joint="curve")
    return np.asarray(canvas) > 0


def _blob_mask(size: int, rng: np.random.Generator, centre: tuple[float, float], radius: float) -> Array:
    """Irregular blob: union of a few overlapping discs around ``centre`` (fractions of the side)."""
    yy, xx = _grid(size)
    mask = np.zeros((size, size), dtype=bool)
    for _ in range(rng.integers(3, 6)):
        cy = centre[0] + rng.uniform(-radius, radius) * 0.6
        cx = centre[1] + rng.uniform(-radius, radius) * 0.6
        r = radius * rng.uniform(0.45, 0.8)
        mask |= (yy - cy) ** 2 + (xx - cx) ** 2 <= r**2
    # At least the centre pixel, so tiny image sizes still get a defect.
    mask[min(size - 1, int(centre[0] * size)), min(size - 1, int(centre[1] * size))] = True
    return mask


def _point_in(region: Array, rng: np.random.Generator, margin: float = 0.0) -> tuple[float, float]:
    """A random pixel of ``region`` away from the border, as fractions ``(y, x)`` of the side."""
    size = region.shape[0]
    border = int(margin * size)
    inner = np.zeros_like(region)
    inner[border : size - border, border : size - border] = region[border : size - border, border : size - border]
    ys, xs = np.nonzero(inner if inner.any() else region)
    index = rng.integers(len(ys))
    return (ys[index] + 0.5) / size, (xs[index] + 0.5) / size


def _paint(image: Array, mask: Array, colour: Array | Callable[[Array], Array]) -> Array:
    """Replace ``image`` under ``mask`` by ``colour`` (an RGB triple or a function of the old pixels)."""
    out = image.copy()
    out[mask] = colour(image[mask]) if callable(colour) else colour
    return out


# --------------------------------------------------------------------------- disc (object category)

_DISC_BACKGROUND = np.array([0.30, 0.31, 0.33], dtype=np.float32)


def _render_disc(rng: np.random.Generator, size: int) -> _Scene:
    yy, xx = _grid(size)
    cy, cx = 0.5 + rng.uniform(-0.03, 0.03, 2)
    radius, hole = rng.uniform(0.34, 0.37), rng.uniform(0.075, 0.085)
    dy, dx = yy - cy, xx - cx
    r = np.sqrt(dy**2 + dx**2)
    theta = np.arctan2(dy, dx) + rng.uniform(0, 2 * math.pi)
    body = (r <= radius) & (r >= hole)
    brushed = 0.05 * np.sin(theta * 90) + 0.04 * np.sin(2 * math.pi * r * 16)
    shade = 0.62 + brushed - 0.25 * np.clip((r - radius + 0.03) / 0.03, 0, 1)  # darker rim
    metal = np.stack([shade, shade * 0.97, shade * 0.9], axis=-1)
    image = np.where(body[..., None], metal, _DISC_BACKGROUND).astype(np.float32)
    return _Scene(image, body, {"cy": cy, "cx": cx, "radius": radius, "hole": hole})


def _disc_scratch(scene: _Scene, rng: np.random.Generator) -> tuple[Array, Array]:
    size = scene.image.shape[0]
    start_y, start_x = _point_in(scene.region, rng)
    heading = rng.uniform(0, 2 * math.pi)
    points = [(start_x, start_y)]
    for _ in range(3):
        heading += rng.uniform(-0.5, 0.5)
        step = rng.uniform(0.05, 0.09)
        points.append((points[-1][0] + step * math.cos(heading), points[-1][1] + step * math.sin(heading)))
    mask = _polyline_mask(size, points, width=max(1.0, size / 96)) & scene.region
    return _paint(scene.image, mask, np.array([0.93, 0.93, 0.9], dtype=np.float32)), mask


def _disc_missing(scene: _Scene, rng: np.random.Generator) -> tuple[Array, Array]:
    size = scene.image.shape[0]
    p = scene.params
    angle = rng.uniform(0, 2 * math.pi)
    centre = (p["cy"] + p["radius"] * math.sin(angle), p["cx"] + p["radius"] * math.cos(angle))
    mask = _blob_mask(size, rng, centre, radius=rng.uniform(0.08, 0.12)) & scene.region
    if not mask.any():  # tiny images: take the rim pixel nearest to the chosen point
        mask = _nearest_pixel(scene.region, centre)
    return _paint(scene.image, mask, _DISC_BACKGROUND), mask


# --------------------------------------------------------------------------- fabric (texture category)


def _render_fabric(rng: np.random.Generator, size: int) -> _Scene:
    yy, xx = _grid(size)
    angle = math.radians(rng.uniform(-4, 4))
    along = math.cos(angle) * yy + math.sin(angle) * xx + rng.uniform(0, 1)
    stripes = (np.sin(2 * math.pi * along * 7) > 0.2).astype(np.float32)[..., None]
    warp = np.array([0.20, 0.29, 0.55], dtype=np.float32)
    weft = np.array([0.80, 0.74, 0.58], dtype=np.float32)
    period = max(2.0, size / 42)
    weave = 0.05 * np.sin(2 * math.pi * xx * size / period) * np.sin(2 * math.pi * yy * size / period)
    image = (stripes * warp + (1 - stripes) * weft) * (1 + weave[..., None])
    return _Scene(image.astype(np.float32), np.ones((size, size), dtype=bool), {})


def _fabric_stain(scene: _Scene, rng: np.random.Generator) -> tuple[Array, Array]:
    size = scene.image.shape[0]
    mask = _blob_mask(size, rng, _point_in(scene.region, rng, margin=0.15), radius=rng.uniform(0.06, 0.1))
    tint = np.array([0.55, 0.42, 0.28], dtype=np.float32) * rng.uniform(0.8, 1.0)
    return _paint(scene.image, mask, lambda pixels: pixels * tint), mask


def _fabric_hole(scene: _Scene, rng: np.random.Generator) -> tuple[Array, Array]:
    size = scene.image.shape[0]
    mask = _blob_mask(size, rng, _point_in(scene.region, rng, margin=0.15), radius=rng.uniform(0.03, 0.06))
    return _paint(scene.image, mask, np.array([0.04, 0.04, 0.05], dtype=np.float32)), mask


# --------------------------------------------------------------------------- circuit (structured category)

_BOARD = np.array([0.10, 0.36, 0.17], dtype=np.float32)
_COPPER = np.array([0.78, 0.58, 0.30], dtype=np.float32)
_PAD = np.array([0.82, 0.82, 0.80], dtype=np.float32)
_PITCH = 0.125  # grid spacing as a fraction of the side


def _render_circuit(rng: np.random.Generator, size: int) -> _Scene:
    yy, xx = _grid(size)
    oy, ox = rng.uniform(0, _PITCH, 2)
    trace = max(0.012, 1.0 / size)
    fy, fx = (yy - oy) % _PITCH, (xx - ox) % _PITCH
    traces = (np.minimum(fy, _PITCH - fy) < trace) | (np.minimum(fx, _PITCH - fx) < trace)
    pads = (np.minimum(fy, _PITCH - fy) < 0.03) & (np.minimum(fx, _PITCH - fx) < 0.03)
    grain = 1 + 0.04 * np.sin(2 * math.pi * (xx * 23 + yy * 5))
    image = _BOARD * grain[..., None]
    image = np.where(traces[..., None], _COPPER, image)
    image = np.where(pads[..., None], _PAD, image).astype(np.float32)
    return _Scene(image, np.ones((size, size), dtype=bool), {"pads": pads})


def _circuit_missing(scene: _Scene, rng: np.random.Generator) -> tuple[Array, Array]:
    pads: Array = scene.params["pads"]
    size = scene.image.shape[0]
    # One whole pad (its connected square), chosen away from the border, replaced by bare board.
    cy, cx = _point_in(pads, rng, margin=0.1)
    yy, xx = _grid(size)
    near = (np.abs(yy - cy) < 0.04) & (np.abs(xx - cx) < 0.04)
    mask = pads & near
    return _paint(scene.image, mask, _BOARD), mask


def _circuit_spot(scene: _Scene, rng: np.random.Generator) -> tuple[Array, Array]:
    size = scene.image.shape[0]
    mask = _blob_mask(size, rng, _point_in(scene.region, rng, margin=0.1), radius=rng.uniform(0.03, 0.05))
    return _paint(scene.image, mask, np.array([0.18, 0.16, 0.15], dtype=np.float32)), mask


def _nearest_pixel(region: Array, point: tuple[float, float]) -> Array:
    """Mask holding the single pixel of ``region`` nearest to ``point`` (fractions ``(y, x)``)."""
    size = region.shape[0]
    ys, xs = np.nonzero(region)
    index = np.argmin((ys - point[0] * size) ** 2 + (xs - point[1] * size) ** 2)
    mask = np.zeros_like(region)
    mask[ys[index], xs[index]] = True
    return mask


DEMO_CATEGORIES: dict[str, DemoCategory] = {
    "disc": DemoCategory(
        render=_render_disc,
        defects={"scratch": _disc_scratch, "missing": _disc_missing},
        object_noun="brushed metal disc",
        normal=("round {object} with concentric rings", "{object} with a clean rim and a centre hole"),
        defect_phrases={
            "scratch": ("{object} with a scratch", "scratched {object}", "{object} with a bright scratch line"),
            "missing": ("{object} with a missing piece", "broken {object} with a chunk missing from the rim"),
        },
    ),
    "fabric": DemoCategory(
        render=_render_fabric,
        defects={"stain": _fabric_stain, "hole": _fabric_hole},
        object_noun="striped woven fabric",
        normal=("{object} with regular blue and beige stripes", "clean {object}"),
        defect_phrases={
            "stain": ("{object} with a brown stain", "stained {object}", "{object} with a dirty spot"),
            "hole": ("{object} with a hole", "torn {object} with a dark hole"),
        },
    ),
    "circuit": DemoCategory(
        render=_render_circuit,
        defects={"missing": _circuit_missing, "spot": _circuit_spot},
        object_noun="printed circuit board",
        normal=("green {object} with a regular grid of copper traces and pads", "clean {object}"),
        defect_phrases={
            "missing": ("{object} with a missing pad", "{object} with a missing solder pad"),
            "spot": ("{object} with a dark spot", "{object} with contamination", "dirty {object}"),
        },
    ),
}


# --------------------------------------------------------------------------- writing


def _save_image(image: Array, path: Path) -> None:
    Image.fromarray(np.round(np.clip(image, 0, 1) * 255).astype(np.uint8), mode="RGB").save(path)


def _save_mask(mask: Array, path: Path) -> None:
    Image.fromarray(mask.astype(np.uint8) * 255, mode="L").save(path)


def _prompt_catalog(categories: Sequence[str]) -> dict:
    """The categories' prompt catalog (format of ``anomalib_promptmad.prompts``, version 1)."""
    return {
        "version": 1,
        "categories": {
            name: {
                "object": DEMO_CATEGORIES[name].object_noun,
                "normal": list(DEMO_CATEGORIES[name].normal),
                "defects": {defect: list(p) for defect, p in DEMO_CATEGORIES[name].defect_phrases.items()},
            }
            for name in categories
        },
    }


def _write_tree(
    target: Path,
    categories: Sequence[str],
    image_size: int,
    counts: tuple[int, int, int],
    seed: int,
    progress: bool,
) -> None:
    """Write every category into ``target`` (an empty folder)."""
    n_train, n_test_good, n_test_defect = counts
    total = sum(n_train + n_test_good + n_test_defect * len(DEMO_CATEGORIES[c].defects) for c in categories)
    with tqdm(total=total, desc="demo dataset", unit="img", disable=not progress) as bar:
        for category_index, name in enumerate(categories):
            spec = DEMO_CATEGORIES[name]
            # One stream per category: adding a category leaves the others unchanged.
            rng = np.random.default_rng([seed, category_index, sum(map(ord, name))])
            folders = [("train/good", n_train, None), ("test/good", n_test_good, None)]
            folders += [(f"test/{defect}", n_test_defect, defect) for defect in spec.defects]
            for folder, count, defect in folders:
                image_dir = target / name / folder
                image_dir.mkdir(parents=True)
                mask_dir = target / name / "ground_truth" / (defect or "")
                if defect is not None:
                    mask_dir.mkdir(parents=True)
                for index in range(count):
                    scene = spec.render(rng, image_size)
                    image = scene.image
                    if defect is not None:
                        image, mask = spec.defects[defect](scene, rng)
                        _save_mask(mask, mask_dir / f"{index:03d}_mask.png")
                    _save_image(_finish(image, rng), image_dir / f"{index:03d}.png")
                    bar.update()
    with (target / "prompts.yaml").open("w", encoding="utf-8") as file:
        file.write("# Prompt catalog of the PromptMAD demo dataset (anomalib_promptmad.prompts format).\n")
        yaml.safe_dump(_prompt_catalog(categories), file, sort_keys=False, allow_unicode=True)


def generate_demo_dataset(
    root: str | Path,
    categories: Sequence[str] = ("disc", "fabric", "circuit"),
    image_size: int = 128,
    n_train: int = 24,
    n_test_good: int = 6,
    n_test_defect: int = 6,
    seed: int = 0,
    overwrite: bool = False,
    progress: bool = False,
) -> Path:
    """Write the demo dataset to ``root`` in the MVTec AD layout, atomically.

    Everything is written into a temporary folder beside ``root`` and renamed into place at the end,
    so an interrupted run leaves no half-written dataset (and no folder at all).

    Args:
        root (str | Path): Dataset root to create, e.g. ``"./datasets/promptmad_demo"``.
        categories (Sequence[str]): Categories to draw, from ``DEMO_CATEGORIES`` (``disc``, ``fabric``,
            ``circuit``). Defaults to all three.
        image_size (int): Side of the square images in pixels (at least 32). Defaults to ``128``.
        n_train (int): Normal training images per category. Defaults to ``24``.
        n_test_good (int): Normal test images per category. Defaults to ``6``.
        n_test_defect (int): Test images per defect type (each category has two). Defaults to ``6``.
        seed (int): Random seed; the same arguments give identical files. Defaults to ``0``.
        overwrite (bool): Replace an existing non-empty ``root``. Defaults to ``False``.
        progress (bool): Show a progress bar. Defaults to ``False``.

    Returns:
        Path: The dataset root.

    Raises:
        ValueError: On an unknown category, a too small image size or a negative count.
        FileExistsError: If ``root`` exists and is not empty (and ``overwrite`` is ``False``), or is a file.
    """
    root = Path(root)
    categories = list(dict.fromkeys(categories))
    unknown = [c for c in categories if c not in DEMO_CATEGORIES]
    if unknown or not categories:
        msg = f"Unknown demo categories {unknown or '(none given)'}; available: {sorted(DEMO_CATEGORIES)}"
        raise ValueError(msg)
    if image_size < 32:
        msg = f"image_size must be at least 32 pixels, got {image_size}"
        raise ValueError(msg)
    if min(n_train, n_test_good, n_test_defect) < 1:
        msg = f"n_train, n_test_good and n_test_defect must be >= 1, got {n_train}, {n_test_good}, {n_test_defect}"
        raise ValueError(msg)
    if root.exists() and not root.is_dir():
        msg = f"Demo dataset root '{root}' exists and is not a folder."
        raise FileExistsError(msg)
    if root.is_dir() and any(root.iterdir()) and not overwrite:
        msg = (
            f"Demo dataset root '{root}' exists and is not empty; choose another root or replace it "
            "(`promptmad-demo-data --overwrite`; in Python `overwrite=True`)."
        )
        raise FileExistsError(msg)

    created_parent = _first_missing_ancestor(root.parent)
    root.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{root.name}.tmp-", dir=root.parent))
    staging.chmod(default_folder_mode())  # it becomes `root`: the mode mkdir gives, not mkdtemp's 0700
    try:
        _write_tree(staging, categories, image_size, (n_train, n_test_good, n_test_defect), seed, progress)
        _replace_folder(staging, root)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        if created_parent is not None:
            shutil.rmtree(created_parent, ignore_errors=True)
        raise
    return root


def _first_missing_ancestor(path: Path) -> Path | None:
    """The outermost missing folder on the way to ``path`` (removed again if generation fails)."""
    missing = None
    for candidate in (path, *path.parents):
        if candidate.exists():
            break
        missing = candidate
    return missing


def _replace_folder(staging: Path, root: Path) -> None:
    """Rename ``staging`` to ``root``; an existing ``root`` is moved aside first and deleted last."""
    if not root.exists():
        staging.rename(root)
        return
    if not any(root.iterdir()):
        root.rmdir()
        staging.rename(root)
        return
    trash = Path(tempfile.mkdtemp(prefix=f".{root.name}.old-", dir=root.parent))
    trash.rmdir()
    root.rename(trash)
    try:
        staging.rename(root)
    except BaseException:
        trash.rename(root)  # put the old dataset back
        raise
    shutil.rmtree(trash, ignore_errors=True)


def main(argv: Sequence[str] | None = None) -> int:
    """Console entry point ``promptmad-demo-data``.

    Args:
        argv (Sequence[str] | None): Arguments (defaults to ``sys.argv[1:]``).

    Returns:
        int: Exit status (0 on success; argparse exits with 2 on bad arguments).
    """
    parser = argparse.ArgumentParser(
        prog="promptmad-demo-data",
        description="Write a small synthetic multi-category anomaly dataset in the MVTec AD layout.",
    )
    parser.add_argument("--root", required=True, type=Path, help="dataset folder to create")
    parser.add_argument("--image-size", type=int, default=128, help="image side in pixels (default: 128)")
    parser.add_argument(
        "--categories",
        nargs="+",
        default=list(DEMO_CATEGORIES),
        choices=sorted(DEMO_CATEGORIES),
        help="categories to draw (default: all)",
    )
    parser.add_argument("--n-train", type=int, default=24, help="normal training images per category")
    parser.add_argument("--n-test-good", type=int, default=6, help="normal test images per category")
    parser.add_argument("--n-test-defect", type=int, default=6, help="test images per defect type")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing non-empty root")
    args = parser.parse_args(argv)
    try:
        root = generate_demo_dataset(
            args.root,
            categories=args.categories,
            image_size=args.image_size,
            n_train=args.n_train,
            n_test_good=args.n_test_good,
            n_test_defect=args.n_test_defect,
            seed=args.seed,
            overwrite=args.overwrite,
            progress=True,
        )
    except (ValueError, FileExistsError) as error:
        parser.error(str(error))
    print(f"Demo dataset written to {root.resolve()}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
