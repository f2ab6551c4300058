# Copyright (C) 2026 anomalib-promptmad developers
# SPDX-License-Identifier: Apache-2.0

"""The model README's module map lists every module of the package, and nothing that is not there."""

from __future__ import annotations

import re
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "anomalib_promptmad"


def _mapped_modules(readme: str) -> set[str]:
    """Module paths in the first column of the "Module map" table; a bare name shares the previous one's folder."""
    section = readme.split("## Module map", 1)[1].split("\n## ", 1)[0]
    modules = set()
    for row in section.splitlines():
        if not row.startswith("| `"):
            continue
        folder = ""
        for name in re.findall(r"`([\w/]+\.py)`", row.split(" | ", 1)[0]):
            if "/" in name:
                folder = name.rsplit("/", 1)[0] + "/"
                modules.add(name)
            else:
                modules.add(folder + name)
    return modules


def test_the_module_map_matches_the_tree() -> None:
    """Every module (package ``__init__`` / ``__main__`` aside) is in the map, and every mapped module exists."""
    tree = {
        path.relative_to(PACKAGE).as_posix()
        for path in PACKAGE.rglob("*.py")
        if path.name not in {"__init__.py", "__main__.py"}
    }
    mapped = _mapped_modules((PACKAGE / "README.md").read_text(encoding="utf-8"))
    assert not tree - mapped, f"modules missing from the module map: {sorted(tree - mapped)}"
    assert not mapped - tree, f"module map entries that are not modules: {sorted(mapped - tree)}"
