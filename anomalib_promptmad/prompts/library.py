# Copyright (C) 2026 anomalib-promptmad developers
# SPDX-License-Identifier: Apache-2.0

"""Class prompt library: normal-state and anomalous-state descriptions per category.

PromptMAD conditions its model on text describing, per category, what a normal object looks like and
which defects it can have. Sentences are composed WinCLIP-style: every *template* (``"a photo of a {}."``)
is filled with every *state phrase* (``"flawless {object}"``, ``"{object} with a bent lead"``) whose
``{object}`` is the category's noun. Packaged catalogs cover the 15 MVTec AD categories (defect keys =
the dataset's ``test/`` folder names) and the 12 VisA categories (defect keys = its annotation labels).
Unknown categories fall back to generic prompts built from the category name, with one warning.

YAML catalog format (``version: 1``; read with ``yaml.safe_load``, checked with jsonargparse; also in
``catalog/README.md``, example in ``catalog/example_user_prompts.yaml``)::

    version: 1                      # optional; only 1 exists
    templates:                      # optional; each holds "{}" once; default: DEFAULT_TEMPLATES
      - "a photo of a {}."
    normal_states:                  # optional; each holds "{object}"; default: DEFAULT_NORMAL_STATES
      - "flawless {object}"
    anomalous_states:               # optional; each holds "{object}"; default: DEFAULT_ANOMALOUS_STATES
      - "damaged {object}"
    categories:                     # required, non-empty mapping: category name -> entry
      gear:                         # lookup ignores case, spaces, hyphens and underscores
        object: metal gear          # required noun replacing {object}
        normal:                     # optional extra normal-state phrases for this category
          - "{object} with evenly spaced teeth"
        anomalous:                  # optional extra generic anomalous phrases for this category
          - "worn {object}"
        defects:                    # optional mapping: defect type -> phrases
          broken_tooth:
            - "{object} with a broken tooth"

File-level ``templates`` / ``*_states`` replace the defaults for the categories of that file. Per
category, ``normal`` sentences come from ``normal_states + normal``; each defect type's sentences from its
phrases; ``anomalous`` is every defect sentence followed by the sentences of ``anomalous_states +
anomalous``. A category defined in a later file replaces the same category of an earlier file (the
packaged catalogs come first).

Example:
    >>> from anomalib_promptmad.prompts import PromptLibrary
    >>> library = PromptLibrary.default()
    >>> sorted(library.prompts_for("Metal Nut").defects)
    ['bent', 'color', 'flip', 'scratch']
    >>> library.prompts_for("bottle").normal[0]
    'a photo of a bottle.'
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import torch
import torch.nn.functional as F  # noqa: N812
import yaml
from jsonargparse.typing import NotEmptyStr

from anomalib_promptmad.infrastructure.typed_yaml import InvalidKeyError, build, mapping

if TYPE_CHECKING:
    from importlib.resources.abc import Traversable

    from anomalib_promptmad.prompts.text_encoder import TextEncoder

__all__ = [
    "DEFAULT_ANOMALOUS_STATES",
    "DEFAULT_NORMAL_STATES",
    "DEFAULT_TEMPLATES",
    "PACKAGED_CATALOGS",
    "ClassPrompts",
    "PromptCatalogError",
    "PromptLibrary",
    "class_text_embeddings",
    "compose_class_prompts",
]

DEFAULT_TEMPLATES: tuple[str, ...] = (
    "a photo of a {}.",
    "a photo of the {}.",
    "a cropped photo of the {}.",
    "a close-up photo of a {}.",
    "a bright photo of a {}.",
    "a dark photo of the {}.",
    "a blurry photo of a {}.",
    "a photo of the {} for visual inspection.",
)
# WinCLIP's state words (anomalib.models.image.winclip.prompting), with an explicit {object} slot.
DEFAULT_NORMAL_STATES: tuple[str, ...] = (
    "{object}",
    "flawless {object}",
    "perfect {object}",
    "unblemished {object}",
    "{object} without flaw",
    "{object} without defect",
    "{object} without damage",
)
DEFAULT_ANOMALOUS_STATES: tuple[str, ...] = (
    "damaged {object}",
    "{object} with flaw",
    "{object} with defect",
    "{object} with damage",
)
# Loaded in this order by PromptLibrary.default(), from the package folder prompts/catalog/.
PACKAGED_CATALOGS: tuple[str, ...] = ("mvtec_ad.yaml", "visa.yaml")

_FORMAT_HELP = "see anomalib_promptmad/prompts/catalog/README.md"
# Categories that already warned about their generic fallback, so each warns once per process.
_WARNED_FALLBACKS: set[str] = set()


class PromptCatalogError(ValueError):
    """A prompt catalog file is malformed; the message names the file and the offending key."""


@dataclass(frozen=True)
class ClassPrompts:
    """Prompt sentences of one category.

    Attributes:
        category: Category name.
        normal: Sentences describing a normal object.
        anomalous: Every defect sentence, then the generic anomalous sentences.
        defects: Defect type -> its sentences.
    """

    category: str
    normal: tuple[str, ...]
    anomalous: tuple[str, ...]
    defects: dict[str, tuple[str, ...]]


def _normalise_name(name: str) -> str:
    """Lookup key of a category name: case, spaces, hyphens and underscores do not matter."""
    return re.sub(r"[\s_\-]+", "", name.lower())


def _fix_articles(sentence: str) -> str:
    """Write "an" before words starting with a, e, i or o ("a photo of a apple." -> "... an apple.")."""
    return re.sub(r"\b([Aa]) (?=[aeioAEIO])", r"\1n ", sentence)


def _fill(templates: Iterable[str], phrases: Iterable[str], noun: str) -> tuple[str, ...]:
    """Every template filled with every phrase (phrase-major), duplicates removed, order kept."""
    sentences = (
        _fix_articles(template.replace("{}", phrase.replace("{object}", noun)))
        for phrase in phrases
        for template in templates
    )
    return tuple(dict.fromkeys(sentences))


def compose_class_prompts(
    category: str,
    noun: str,
    *,
    normal: Sequence[str] = (),
    anomalous: Sequence[str] = (),
    defects: Mapping[str, Sequence[str]] | None = None,
    templates: Sequence[str] = DEFAULT_TEMPLATES,
    normal_states: Sequence[str] = DEFAULT_NORMAL_STATES,
    anomalous_states: Sequence[str] = DEFAULT_ANOMALOUS_STATES,
) -> ClassPrompts:
    """Compose the sentences of one category from templates and state phrases.

    Args:
        category: Category name stored in the result.
        noun: Words replacing ``{object}`` in the phrases.
        normal: Extra normal-state phrases, after ``normal_states``.
        anomalous: Extra generic anomalous phrases, after ``anomalous_states``.
        defects: Defect type -> phrases describing it.
        templates: Sentence templates, each holding ``{}`` once.
        normal_states: Generic normal-state phrases.
        anomalous_states: Generic anomalous-state phrases.

    Returns:
        The category's prompts.

    Example:
        >>> prompts = compose_class_prompts("gear", "gear", defects={"crack": ["cracked {object}"]})
        >>> prompts.defects["crack"][0]
        'a photo of a cracked gear.'
    """
    defect_sentences = {name: _fill(templates, phrases, noun) for name, phrases in (defects or {}).items()}
    generic = _fill(templates, [*anomalous_states, *anomalous], noun)
    all_defects = (sentence for sentences in defect_sentences.values() for sentence in sentences)
    return ClassPrompts(
        category=category,
        normal=_fill(templates, [*normal_states, *normal], noun),
        anomalous=tuple(dict.fromkeys([*all_defects, *generic])),
        defects=defect_sentences,
    )


@dataclass(frozen=True, kw_only=True)
class _Catalog:
    """A catalog file as written (format: module docstring); :func:`_catalog_prompts` checks the rest."""

    version: Literal[1] = 1
    templates: tuple[NotEmptyStr, ...] = DEFAULT_TEMPLATES
    normal_states: tuple[NotEmptyStr, ...] = DEFAULT_NORMAL_STATES
    anomalous_states: tuple[NotEmptyStr, ...] = DEFAULT_ANOMALOUS_STATES
    # entries are read one by one, so that an error names the category (jsonargparse's would name the mapping)
    categories: dict[Any, Any]


@dataclass(frozen=True, kw_only=True)
class _CategoryEntry:
    """One entry of a catalog's ``categories``, as written."""

    object: NotEmptyStr
    normal: tuple[NotEmptyStr, ...] = ()
    anomalous: tuple[NotEmptyStr, ...] = ()
    defects: dict[Any, tuple[NotEmptyStr, ...]] = field(default_factory=dict)


def _catalog_prompts(document: Any) -> dict[str, ClassPrompts]:
    """Prompts of every category of a parsed catalog, keyed by normalised name.

    Raises:
        InvalidKeyError: Anything wrong; the key names it (``<file>`` for the whole document).
    """
    if document is None:
        raise InvalidKeyError("<file>", "the file is empty; expected a mapping with a 'categories' key")
    catalog = build(_Catalog, mapping(document, "<file>"))
    templates = _phrases(catalog.templates, "templates", "{}", required=True)
    for index, template in enumerate(templates):
        if template.count("{}") != 1:
            raise InvalidKeyError(f"templates[{index}]", f"{template!r} must contain {{}} exactly once")
    normal_states = _phrases(catalog.normal_states, "normal_states", "{object}", required=True)
    anomalous_states = _phrases(catalog.anomalous_states, "anomalous_states", "{object}", required=True)
    if not catalog.categories:
        raise InvalidKeyError("categories", "expected at least one category, got an empty mapping")

    result: dict[str, ClassPrompts] = {}
    for raw_name, raw_entry in catalog.categories.items():
        name = _name(raw_name, f"categories (key {raw_name!r})")
        where = f"categories.{name}"
        key = _normalise_name(name)
        if key in result:
            raise InvalidKeyError(
                where, f"same category as {result[key].category!r} (names ignore case and separators)"
            )
        if raw_entry is None:
            raise InvalidKeyError(where, "empty entry; it needs at least 'object: <noun>'")
        entry = build(_CategoryEntry, raw_entry, where)
        result[key] = compose_class_prompts(
            name,
            entry.object.strip(),
            normal=_phrases(entry.normal, f"{where}.normal", "{object}"),
            anomalous=_phrases(entry.anomalous, f"{where}.anomalous", "{object}"),
            defects={
                _name(defect, f"{where}.defects (key {defect!r})"): _phrases(
                    phrases, f"{where}.defects.{defect}", "{object}", required=True
                )
                for defect, phrases in entry.defects.items()
            },
            templates=templates,
            normal_states=normal_states,
            anomalous_states=anomalous_states,
        )
    return result


def _name(value: Any, key: str) -> str:
    """A category or defect name, stripped (mapping keys, which jsonargparse does not check)."""
    if not isinstance(value, str) or not value.strip():
        raise InvalidKeyError(key, f"expected a non-empty string, got {value!r}")
    return value.strip()


def _phrases(phrases: tuple[str, ...], key: str, placeholder: str, *, required: bool = False) -> tuple[str, ...]:
    """The phrases, stripped, each checked to hold ``placeholder``; ``required``: at least one."""
    if required and not phrases:
        raise InvalidKeyError(key, "expected at least one entry, got an empty list")
    for index, phrase in enumerate(phrases):
        if placeholder not in phrase:
            raise InvalidKeyError(f"{key}[{index}]", f"{phrase!r} must contain {placeholder}")
    return tuple(phrase.strip() for phrase in phrases)


def _read_catalog(source: Path | Traversable, label: str) -> dict[str, ClassPrompts]:
    """Read, parse and validate one catalog file."""
    if not source.is_file():
        msg = f"Prompt catalog file not found: {label}"
        if isinstance(source, Path) and not source.is_absolute():
            # a path in a config file is not read relative to that file: say where it was looked for
            msg += (
                f" (a relative path is read from the current directory, {Path.cwd()}, not from the config file "
                f"that names it: looked for {Path.cwd() / source}). Pass an absolute path "
                "(--model.prompt_library /abs/path/prompts.yaml) or run the command from the folder it is relative to."
            )
        raise FileNotFoundError(msg)
    try:
        document = yaml.safe_load(source.read_text(encoding="utf-8"))
    except yaml.YAMLError as error:
        msg = f"{label}: invalid YAML: {error}"
        raise PromptCatalogError(msg) from error
    except UnicodeDecodeError as error:
        msg = f"{label}: not a UTF-8 text file: {error}"
        raise PromptCatalogError(msg) from error
    try:
        return _catalog_prompts(document)
    except InvalidKeyError as error:
        msg = f"{label}: {error} ({_FORMAT_HELP})"
        raise PromptCatalogError(msg) from error


@cache
def _packaged_catalog(filename: str) -> dict[str, ClassPrompts]:
    source = resources.files("anomalib_promptmad.prompts") / "catalog" / filename
    return _read_catalog(source, str(source))


class PromptLibrary:
    """Prompts per category, from packaged and user YAML catalogs.

    Args:
        prompts: Category prompts; later entries replace earlier ones of the same (normalised) name.

    Example:
        >>> library = PromptLibrary.default()
        >>> len(library.categories)
        27
        >>> library.prompts_for("transistor").defects.keys()
        dict_keys(['bent_lead', 'cut_lead', 'damaged_case', 'misplaced'])
    """

    def __init__(self, prompts: Iterable[ClassPrompts] = ()) -> None:
        self._prompts: dict[str, ClassPrompts] = {_normalise_name(p.category): p for p in prompts}

    @classmethod
    def default(cls) -> PromptLibrary:
        """Library of the packaged catalogs (:data:`PACKAGED_CATALOGS`: MVTec AD, then VisA)."""
        return cls(prompts for name in PACKAGED_CATALOGS for prompts in _packaged_catalog(name).values())

    @classmethod
    def from_yaml(cls, *paths: str | Path, packaged: bool = True) -> PromptLibrary:
        """Library of YAML catalogs, each overriding and extending the ones before it.

        Args:
            *paths: Catalog files in the format of the module docstring.
            packaged: Start from the packaged catalogs (MVTec AD, VisA) before ``paths``.

        Returns:
            The library.

        Raises:
            FileNotFoundError: A file does not exist.
            PromptCatalogError: A file is malformed (the message names the file and the key).
        """
        library = cls.default() if packaged else cls()
        for path in paths:
            library = library.with_yaml(path)
        return library

    def with_yaml(self, path: str | Path) -> PromptLibrary:
        """New library where the categories of ``path`` replace or extend those of this one.

        Raises:
            FileNotFoundError: The file does not exist.
            PromptCatalogError: The file is malformed (the message names the file and the key).
        """
        path = Path(path).expanduser()
        return PromptLibrary([*self._prompts.values(), *_read_catalog(path, str(path)).values()])

    @property
    def categories(self) -> list[str]:
        """Names of the categories with their own prompts, in catalog order."""
        return [prompts.category for prompts in self._prompts.values()]

    def __contains__(self, category: object) -> bool:
        return isinstance(category, str) and _normalise_name(category) in self._prompts

    def __len__(self) -> int:
        return len(self._prompts)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({len(self)} categories)"

    def prompts_for(self, category: str) -> ClassPrompts:
        """Prompts of ``category``, ignoring case, spaces, hyphens and underscores.

        An unknown category gets generic prompts built from its name (``"a photo of a flawless {name}."``,
        ``"a photo of a damaged {name}."``, ...) and one warning per process explaining how to describe it.

        Args:
            category: Category name, e.g. ``"metal_nut"`` or ``"Metal Nut"``.

        Returns:
            The category's prompts.
        """
        if not isinstance(category, str) or not category.strip():
            msg = f"category must be a non-empty string, got {category!r}"
            raise ValueError(msg)
        key = _normalise_name(category)
        if key in self._prompts:
            return self._prompts[key]
        return _fallback_prompts(category.strip())


@cache
def _fallback_prompts(category: str) -> ClassPrompts:
    """Generic prompts for a category without catalog entry, warning once per category."""
    noun = re.sub(r"[\s_\-]+", " ", category).strip().lower()
    prompts = compose_class_prompts(category, noun)
    if _normalise_name(category) not in _WARNED_FALLBACKS:
        _WARNED_FALLBACKS.add(_normalise_name(category))
        warnings.warn(
            f"No prompts for category {category!r} in the prompt library; using generic prompts with the noun "
            f"{noun!r} (e.g. {prompts.normal[len(DEFAULT_TEMPLATES)]!r}, {prompts.anomalous[0]!r}). "
            "To describe its normal state and defect types, write a YAML file such as\n"
            f"  categories:\n    {category}:\n      object: {noun}\n      defects:\n"
            f"        scratch: ['{{object}} with a scratch']\n"
            "and pass it to the model: `--model.prompt_library PATH` on the anomalib command line, "
            "`PromptMAD(prompt_library=PATH)` in Python, or save it as `prompts.yaml` in the dataset root, where "
            f"PromptMAD reads it when no prompt_library is given ({_FORMAT_HELP}; example: "
            "catalog/example_user_prompts.yaml).",
            UserWarning,
            stacklevel=3,
        )
    return prompts


def class_text_embeddings(prompts: ClassPrompts, encoder: TextEncoder) -> torch.Tensor:
    """Mean normal and mean anomalous text embedding of one category.

    Args:
        prompts: The category's prompts.
        encoder: Text encoder producing ``E``-dimensional unit vectors.

    Returns:
        Tensor of shape ``(2, E)``: row 0 is the normalised mean of the normal sentence embeddings,
        row 1 that of the anomalous ones.

    Raises:
        ValueError: ``prompts`` has no normal or no anomalous sentence.
    """
    if not prompts.normal or not prompts.anomalous:
        msg = f"category {prompts.category!r} needs normal and anomalous sentences to build text embeddings"
        raise ValueError(msg)
    normal = encoder.encode(prompts.normal).mean(dim=0)  # (E,)
    anomalous = encoder.encode(prompts.anomalous).mean(dim=0)  # (E,)
    return F.normalize(torch.stack([normal, anomalous]), dim=-1)
