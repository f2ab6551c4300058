# Copyright (C) 2026 anomalib-promptmad developers
# SPDX-License-Identifier: Apache-2.0

"""Register PromptMAD with the stock ``anomalib`` package, without editing it.

anomalib has no plugin entry points: ``anomalib train --model NAME``, ``get_model`` and
``list_models`` only see :class:`~anomalib.models.components.AnomalibModule` subclasses that have been
imported, and ``get_model({"class_path": "NAME"})`` looks ``NAME`` up as an attribute of
``anomalib.models``. The installed ``anomalib_promptmad_registration.pth`` file calls :func:`install`
at interpreter start-up. It adds an import hook (standard library only, so start-up stays cheap and
torch is not imported) that waits for ``anomalib.models`` to finish importing, then imports our
model and datamodules and publishes them as attributes of ``anomalib.models`` / ``anomalib.data``.
Programs that never import anomalib never import anything heavy.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import sys
import warnings
from types import ModuleType

__all__ = ["install", "publish", "register"]

_TRIGGER_MODULE = "anomalib.models"

# (module that defines the class, class name, anomalib namespace it is published in)
_REGISTRATIONS: tuple[tuple[str, str, str], ...] = (
    ("anomalib_promptmad.lightning_model", "PromptMAD", "anomalib.models"),
    ("anomalib_promptmad.data.mvtec", "MultiClassMVTecAD", "anomalib.data"),
    ("anomalib_promptmad.data.folder", "MultiClassFolder", "anomalib.data"),
)


def publish(cls: type, namespace: str) -> None:
    """Make ``cls`` an attribute (and an ``__all__`` entry) of the anomalib module ``namespace``."""
    target = sys.modules[namespace] if namespace in sys.modules else importlib.import_module(namespace)
    setattr(target, cls.__name__, cls)
    public = getattr(target, "__all__", None)
    if isinstance(public, list) and cls.__name__ not in public:
        public.append(cls.__name__)


def _package_is_importing() -> bool:
    """Whether one of our modules is half-imported (anomalib was imported *by* our own code).

    Registering then would import that module circularly; instead each registered module publishes
    itself at the end of its own import.
    """
    return any(
        getattr(getattr(module, "__spec__", None), "_initializing", False)
        for name, module in list(sys.modules.items())
        if name.startswith("anomalib_promptmad.") and name != __name__
    )


def register() -> None:
    """Import PromptMAD and the multi-class datamodules and publish them in anomalib's namespaces.

    Safe to call more than once. A failure is reported as a warning and never breaks anomalib itself.
    """
    if _package_is_importing():
        return
    for module_name, class_name, namespace in _REGISTRATIONS:
        try:
            cls = getattr(importlib.import_module(module_name), class_name)
        except Exception as error:  # noqa: BLE001 - a broken plugin must not break anomalib
            warnings.warn(
                f"anomalib-promptmad could not register {class_name} with anomalib ({error!r}). "
                f"Use the full class path {module_name}.{class_name}, or reinstall anomalib-promptmad.",
                RuntimeWarning,
                stacklevel=2,
            )
            continue
        publish(cls, namespace)


class _RegisteringLoader(importlib.abc.Loader):
    """Delegates loading of ``anomalib.models`` and registers our classes right after it."""

    def __init__(self, loader: importlib.abc.Loader) -> None:
        self._loader = loader

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType | None:
        return self._loader.create_module(spec)

    def exec_module(self, module: ModuleType) -> None:
        self._loader.exec_module(module)
        register()

    def __getattr__(self, name: str) -> object:
        # get_resource_reader, is_package, get_code, ... of the wrapped loader
        return getattr(self._loader, name)


class _AnomalibModelsFinder(importlib.abc.MetaPathFinder):
    """Finds ``anomalib.models`` through the other finders and wraps its loader."""

    def find_spec(
        self,
        fullname: str,
        path: object = None,
        target: ModuleType | None = None,
    ) -> importlib.machinery.ModuleSpec | None:
        if fullname != _TRIGGER_MODULE:
            return None
        for finder in sys.meta_path:
            if finder is self or not hasattr(finder, "find_spec"):
                continue
            spec = finder.find_spec(fullname, path, target)
            if spec is not None:
                if spec.loader is not None:
                    spec.loader = _RegisteringLoader(spec.loader)
                return spec
        return None


def install() -> None:
    """Install the import hook (idempotent); register at once if anomalib.models is already imported."""
    if _TRIGGER_MODULE in sys.modules:
        register()
        return
    if not any(isinstance(finder, _AnomalibModelsFinder) for finder in sys.meta_path):
        sys.meta_path.insert(0, _AnomalibModelsFinder())
