# Copyright (C) 2026 anomalib-promptmad developers
# SPDX-License-Identifier: Apache-2.0

"""Lazy public names for packages (PEP 562): ``import anomalib_promptmad`` stays cheap.

The package is imported by the start-up hook of every interpreter (see
:mod:`anomalib_promptmad.infrastructure.registration`), so its ``__init__`` modules must not import torch or anomalib; their public names are imported on first
access instead. Standard library only.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Mapping, Sequence
from typing import Any

__all__ = ["lazy_exports"]


def lazy_exports(
    package: str,
    exports: Mapping[str, str],
    public: Sequence[str],
) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """Module ``__getattr__`` and ``__dir__`` that import ``exports`` on first access.

    Args:
        package: The package's ``__name__``.
        exports: Public name -> module that defines it.
        public: The package's ``__all__``.

    Returns:
        ``(__getattr__, __dir__)`` to assign in the package's ``__init__``.
    """
    namespace = sys.modules[package].__dict__

    def __getattr__(name: str) -> Any:  # noqa: N807 - the PEP 562 hook
        module_name = exports.get(name)
        if module_name is None:
            msg = f"module {package!r} has no attribute {name!r}"
            raise AttributeError(msg)
        value = getattr(importlib.import_module(module_name), name)
        namespace[name] = value  # later accesses skip this hook
        return value

    def __dir__() -> list[str]:  # noqa: N807 - the PEP 562 hook
        return sorted(public)

    return __getattr__, __dir__
