# Copyright (C) 2026 anomalib-promptmad developers
# SPDX-License-Identifier: Apache-2.0

"""Check that the packages an export format or a runtime needs can be imported, before any work starts.

anomalib's own checks are late or terse: ``to_openvino`` raises a bare ``ModuleNotFoundError`` (the reason
goes only to the log), and ``to_onnx`` creates its output folder before it finds out that ``onnxscript``
is missing. Checking first gives one clear error and leaves nothing behind.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterable

__all__ = ["EXPORT_PACKAGES", "RUNTIME_PACKAGES", "MissingBackendError", "require_packages"]

# What `torch.onnx.export(dynamo=True)` and `openvino.convert_model` import.
EXPORT_PACKAGES: dict[str, tuple[str, ...]] = {
    "torch": (),
    "onnx": ("onnx", "onnxscript"),
    "openvino": ("openvino", "onnx", "onnxscript"),
}
RUNTIME_PACKAGES: dict[str, tuple[str, ...]] = {
    "torch": (),
    "onnxruntime": ("onnxruntime",),
    "openvino": ("openvino",),
}
_INSTALL_HINT = "pip install 'anomalib-promptmad[export]'"


class MissingBackendError(ImportError):
    """A package needed by an export format or an inference runtime cannot be imported."""


def require_packages(packages: Iterable[str], purpose: str) -> None:
    """Import each package; raise one error naming every package that fails.

    A real import (not ``find_spec``) is used on purpose: a package that is installed but broken (a missing
    shared library, an incompatible build) fails here too, instead of half-way through an export.

    Args:
        packages: Top-level module names, e.g. ``("openvino",)``.
        purpose: What needs them, for the message, e.g. ``"OpenVINO export"``.

    Raises:
        MissingBackendError: If any package cannot be imported.
    """
    failures: list[str] = []
    for name in packages:
        try:
            importlib.import_module(name)
        except ImportError as error:  # ModuleNotFoundError included
            failures.append(f"{name} ({error})")
    if failures:
        msg = (
            f"{purpose} needs Python packages that cannot be imported: {'; '.join(failures)}. "
            f"Install them with `{_INSTALL_HINT}`."
        )
        raise MissingBackendError(msg)
