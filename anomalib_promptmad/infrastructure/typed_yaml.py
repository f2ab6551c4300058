# Copyright (C) 2026 anomalib-promptmad developers
# SPDX-License-Identifier: Apache-2.0

"""Mappings read from YAML, checked against a class's init signature by jsonargparse (anomalib's config engine).

The benchmark config, a benchmark's model arguments and the prompt catalogs are mappings from ``yaml.safe_load``.
jsonargparse checks argument names, annotated types (``PositiveInt``, ``Literal``, ``Path``...) and required
arguments; whatever is wrong raises :class:`InvalidKeyError`, whose dotted ``key`` names the wrong value
(``speed.warmup``, ``models[1].init_args.n_features``) for the caller to prefix with its file.
"""

from __future__ import annotations

import re
import textwrap
from collections.abc import Collection, Mapping
from typing import Any, TypeVar

from jsonargparse import ArgumentError, ArgumentParser

__all__ = ["InvalidKeyError", "build", "check_arguments", "init_parameters", "mapping"]

T = TypeVar("T")

# the group the checked arguments are parsed into; jsonargparse's messages name keys below it
_GROUP = "arguments"
_WRONG_VALUE = re.compile(rf'Parser key "{_GROUP}\.(?P<key>[^"]+)":(?P<problem>.*)', re.DOTALL)
_UNKNOWN_KEY = re.compile(rf"Group '{_GROUP}' does not accept option '(?P<key>[^']+)'")
_MISSING_KEY = re.compile(rf"Option '{_GROUP}\.(?P<key>[^']+)' is required")


class InvalidKeyError(ValueError):
    """A value of a YAML mapping that does not fit: ``key`` is its dotted path (``""``: the mapping itself)."""

    def __init__(self, key: str, problem: str) -> None:
        super().__init__(f"{key}: {problem}" if key else problem)
        self.key = key
        self.problem = problem


def mapping(value: Any, key: str) -> Mapping[Any, Any]:
    """``value`` if it is a mapping, else an :class:`InvalidKeyError` about ``key``."""
    if not isinstance(value, Mapping):
        raise InvalidKeyError(key, f"expected a mapping, got {type(value).__name__}")
    return value


def init_parameters(cls: type) -> tuple[str, ...]:
    """Names of the init arguments of ``cls``, as jsonargparse resolves them (also through ``**kwargs``)."""
    return _names(ArgumentParser().add_class_arguments(cls, _GROUP, fail_untyped=False))


def check_arguments(cls: type, values: Any, key: str = "", *, skip: Collection[str] = ()) -> dict[str, Any]:
    """``values`` checked against the init arguments of ``cls``, converted to their annotated types.

    Args:
        cls: The class.
        values: The mapping (argument name -> value).
        key: Where ``values`` sits in its file: the prefix of the keys of errors.
        skip: Init arguments not read from ``values`` (a key for one of them is unknown).

    Returns:
        Every init argument but the skipped ones (defaults filled in), as plain values: YAML and JSON writers
        do not know jsonargparse's restricted types (``PositiveInt``, ``NotEmptyStr``).

    Raises:
        InvalidKeyError: Not a mapping, an unknown key, a value of the wrong type, a required argument missing.
    """
    values = mapping(values, key)
    parser = ArgumentParser(exit_on_error=False)
    names = _names(parser.add_class_arguments(cls, _GROUP, skip=set(skip), fail_untyped=False))
    try:
        namespace = parser.parse_object({_GROUP: dict(values)})
        # parse_object does not type-check nulls: a null that the type does not allow is an error, not a default
        given = parser.parse_object({_GROUP: dict(values)}, defaults=False)
        parser.validate(given, skip_none=False, skip_required=True)
    except (ArgumentError, TypeError) as error:
        raise _invalid(str(error), key, names) from error
    return {name: _plain(value) for name, value in namespace[_GROUP].as_dict().items()}


def build(cls: type[T], values: Any, key: str = "", *, free_form: Collection[str] = (), **given: Any) -> T:
    """``cls`` built from a mapping checked by :func:`check_arguments`.

    Args:
        cls: The class; its ``__post_init__`` may raise :class:`InvalidKeyError` for what types cannot say.
        values: The mapping.
        key: Where ``values`` sits in its file: the prefix of the keys of errors.
        free_form: Free-form mappings (another class's init arguments): passed as written, only checked to be
            mappings, because jsonargparse reads the strings in them as YAML (``"3"`` would become ``3``).
        **given: Arguments not read from ``values`` (a key for one of them there is unknown).

    Returns:
        The instance.

    Raises:
        InvalidKeyError: As :func:`check_arguments`; a free-form argument is no mapping; ``cls`` rejects a value.
    """
    values = mapping(values, key)
    written = {name: value for name, value in values.items() if name not in free_form}
    arguments = check_arguments(cls, written, key, skip={*free_form, *given})
    arguments.update({name: dict(mapping(values[name], _join(key, name))) for name in free_form if name in values})
    try:
        return cls(**arguments, **given)
    except InvalidKeyError as error:
        raise InvalidKeyError(_join(key, error.key), error.problem) from error


def _names(added: list[str]) -> tuple[str, ...]:
    """Argument names from the keys ``add_class_arguments`` added (``arguments.name[.nested]``)."""
    return tuple(dict.fromkeys(added_key.split(".")[1] for added_key in added))


def _join(prefix: str, key: str) -> str:
    return f"{prefix}.{key}" if prefix and key else prefix or key


def _invalid(message: str, key: str, names: tuple[str, ...]) -> InvalidKeyError:
    """The error jsonargparse raised, as the key it names and the problem (its whole message when it names none)."""
    if found := _WRONG_VALUE.match(message):
        # jsonargparse's explanation, its later lines indented under the first (union types explain each option)
        problem = textwrap.dedent(found["problem"].lstrip("\n")).strip().replace("\n", "\n  ")
        return InvalidKeyError(_join(key, found["key"]), problem)
    if found := _UNKNOWN_KEY.match(message):
        return InvalidKeyError(_join(key, found["key"]), f"unknown key; allowed keys: {sorted(names)}")
    if found := _MISSING_KEY.match(message):
        return InvalidKeyError(_join(key, found["key"]), "required, but not given")
    return InvalidKeyError(key, message)


def _plain(value: Any) -> Any:
    """``value`` with jsonargparse's restricted types (``PositiveInt``, ``NotEmptyStr``) as their plain base types."""
    if isinstance(value, dict):
        return {name: _plain(item) for name, item in value.items()}
    if isinstance(value, tuple | list):
        return type(value)(_plain(item) for item in value)
    for base in (bool, int, float, str):
        if isinstance(value, base):
            return base(value)
    return value
