# Copyright (C) 2026 anomalib-promptmad developers
# SPDX-License-Identifier: Apache-2.0

"""Tests of the class prompt library: packaged catalogs, user YAML files, validation and fallback."""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F  # noqa: N812

from anomalib_promptmad.prompts import (
    DEFAULT_TEMPLATES,
    ClassPrompts,
    PromptCatalogError,
    PromptLibrary,
    TextEncoder,
    class_text_embeddings,
)

# Defect types of MVTec AD: the folder names under <category>/test, "good" excluded.
MVTEC_DEFECTS: dict[str, set[str]] = {
    "bottle": {"broken_large", "broken_small", "contamination"},
    "cable": {
        "bent_wire",
        "cable_swap",
        "combined",
        "cut_inner_insulation",
        "cut_outer_insulation",
        "missing_cable",
        "missing_wire",
        "poke_insulation",
    },
    "capsule": {"crack", "faulty_imprint", "poke", "scratch", "squeeze"},
    "carpet": {"color", "cut", "hole", "metal_contamination", "thread"},
    "grid": {"bent", "broken", "glue", "metal_contamination", "thread"},
    "hazelnut": {"crack", "cut", "hole", "print"},
    "leather": {"color", "cut", "fold", "glue", "poke"},
    "metal_nut": {"bent", "color", "flip", "scratch"},
    "pill": {"color", "combined", "contamination", "crack", "faulty_imprint", "pill_type", "scratch"},
    "screw": {"manipulated_front", "scratch_head", "scratch_neck", "thread_side", "thread_top"},
    "tile": {"crack", "glue_strip", "gray_stroke", "oil", "rough"},
    "toothbrush": {"defective"},
    "transistor": {"bent_lead", "cut_lead", "damaged_case", "misplaced"},
    "wood": {"color", "combined", "hole", "liquid", "scratch"},
    "zipper": {
        "broken_teeth",
        "combined",
        "fabric_border",
        "fabric_interior",
        "rough",
        "split_teeth",
        "squeezed_teeth",
    },
}
VISA_CATEGORIES = [
    "candle",
    "capsules",
    "cashew",
    "chewinggum",
    "fryum",
    "macaroni1",
    "macaroni2",
    "pcb1",
    "pcb2",
    "pcb3",
    "pcb4",
    "pipe_fryum",
]


def _write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def _assert_well_formed(prompts: ClassPrompts) -> None:
    assert prompts.normal
    assert prompts.anomalous
    assert len(set(prompts.normal)) == len(prompts.normal)
    assert not set(prompts.normal) & set(prompts.anomalous)
    for sentences in prompts.defects.values():
        assert sentences
        assert set(sentences) <= set(prompts.anomalous)
    for sentence in (*prompts.normal, *prompts.anomalous):
        assert "{" not in sentence
        assert "}" not in sentence


def test_default_library_lists_mvtec_then_visa(library: PromptLibrary) -> None:
    """The packaged library holds the 15 MVTec AD then the 12 VisA categories."""
    assert library.categories == [*MVTEC_DEFECTS, *VISA_CATEGORIES]
    assert len(library) == 27


@pytest.mark.parametrize("category", sorted(MVTEC_DEFECTS))
def test_mvtec_category_has_its_real_defect_types(library: PromptLibrary, category: str) -> None:
    """Each MVTec AD category lists exactly the dataset's defect folders."""
    prompts = library.prompts_for(category)
    assert prompts.category == category
    assert set(prompts.defects) == MVTEC_DEFECTS[category]
    _assert_well_formed(prompts)
    # Every defect sentence is part of the anomalous set, before the generic ones.
    n_defect_sentences = len({s for sentences in prompts.defects.values() for s in sentences})
    assert prompts.anomalous[n_defect_sentences].endswith(
        DEFAULT_TEMPLATES[0].replace("{}", f"damaged {prompts.normal[0][len('a photo of a ') : -1]}")
    )


@pytest.mark.real_data
@pytest.mark.parametrize("category", ["bottle", "pill"])
def test_defect_types_match_real_mvtec_folders(library: PromptLibrary, real_mvtec_root: Path, category: str) -> None:
    """Defect keys equal the folders of the real MVTec AD copy."""
    folders = {path.name for path in (real_mvtec_root / category / "test").iterdir() if path.is_dir()}
    assert set(library.prompts_for(category).defects) == folders - {"good"}


@pytest.mark.parametrize("category", VISA_CATEGORIES)
def test_visa_category_has_prompts(library: PromptLibrary, category: str) -> None:
    """Each VisA category has several defect types and well-formed sentences."""
    prompts = library.prompts_for(category)
    assert len(prompts.defects) >= 4
    _assert_well_formed(prompts)


def test_sentences_are_composed_from_templates_and_states(library: PromptLibrary) -> None:
    """Sentences are templates filled with state and defect phrases."""
    prompts = library.prompts_for("transistor")
    assert "a photo of a flawless transistor." in prompts.normal
    assert "a close-up photo of a transistor without defect." in prompts.normal
    assert "a photo of a transistor with a bent lead." in prompts.defects["bent_lead"]
    assert "a photo of a damaged transistor." in prompts.anomalous
    assert len(prompts.defects["bent_lead"]) == 2 * len(DEFAULT_TEMPLATES)


def test_lookup_ignores_case_spaces_and_hyphens(library: PromptLibrary) -> None:
    """Category lookup ignores case, spaces, hyphens and underscores."""
    expected = library.prompts_for("metal_nut")
    for spelling in ("Metal Nut", "metal-nut", " METAL_NUT ", "metalnut"):
        assert library.prompts_for(spelling) is expected
    assert "Pipe Fryum" in library
    assert "no such thing" not in library


def test_user_yaml_overrides_and_extends(tmp_path: Path, library: PromptLibrary) -> None:
    """A user file replaces packaged categories and adds new ones."""
    user = _write(
        tmp_path / "user.yaml",
        """
version: 1
templates: ["a photo of a {}.", "an image of the {}."]
categories:
  Bottle:
    object: green bottle
    defects:
      broken_large: ["{object} with a large hole"]
  gear:
    object: metal gear
    normal: ["{object} with even teeth"]
    anomalous: ["worn {object}"]
    defects:
      broken_tooth: ["{object} with a broken tooth"]
""",
    )
    extended = PromptLibrary.from_yaml(user)
    # An override keeps the category's place (under the user's spelling); new categories come last.
    assert extended.categories == ["Bottle", *library.categories[1:], "gear"]
    bottle = extended.prompts_for("bottle")
    assert bottle.category == "Bottle"
    assert bottle.defects == {
        "broken_large": (
            "a photo of a green bottle with a large hole.",
            "an image of the green bottle with a large hole.",
        )
    }
    gear = extended.prompts_for("gear")
    assert "an image of the metal gear with even teeth." in gear.normal
    assert gear.anomalous[:2] == gear.defects["broken_tooth"]
    assert "a photo of a worn metal gear." in gear.anomalous
    # The packaged library is untouched, and with_yaml gives the same result as from_yaml.
    assert library.prompts_for("bottle").defects.keys() == MVTEC_DEFECTS["bottle"]
    assert library.with_yaml(user).prompts_for("gear") == gear
    assert PromptLibrary.from_yaml(user, packaged=False).categories == ["Bottle", "gear"]


def test_packaged_example_user_file_loads(library: PromptLibrary) -> None:
    """The documented example user file is valid."""
    example = (
        Path(__file__).resolve().parents[2] / "anomalib_promptmad" / "prompts" / "catalog" / "example_user_prompts.yaml"
    )
    extended = library.with_yaml(example)
    assert "gear" in extended
    assert extended.prompts_for("bottle").normal[0] == "a photo of a brown glass bottle."


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", "the file is empty"),
        ("# only a comment\n", "the file is empty"),
        ("- a\n- b\n", "<file>: expected a mapping, got list"),
        ("categories: []\n", "categories: Expected a <class 'dict'>. Got value: []"),
        ("categories: {}\n", "categories: expected at least one category"),
        ("version: 1\n", "categories: required, but not given"),
        ("version: 2\ncategories: {a: {object: a}}\n", "version: Expected a typing.Literal[1]. Got value: 2"),
        (
            "templats: ['a {}']\ncategories: {a: {object: a}}\n",
            "templats: unknown key; allowed keys: ['anomalous_states'",
        ),
        ("templates: ['a photo']\ncategories: {a: {object: a}}\n", "templates[0]: 'a photo' must contain {}"),
        ("templates: ['{} {}']\ncategories: {a: {object: a}}\n", "templates[0]: '{} {}' must contain {} exactly once"),
        ("normal_states: []\ncategories: {a: {object: a}}\n", "normal_states: expected at least one entry"),
        ("anomalous_states: [broken]\ncategories: {a: {object: a}}\n", "anomalous_states[0]: 'broken' must contain"),
        ("categories: {1: {object: a}}\n", "categories (key 1): expected a non-empty string, got 1"),
        ("categories: {gear: }\n", "categories.gear: empty entry"),
        ("categories: {gear: [x]}\n", "categories.gear: expected a mapping, got list"),
        ("categories: {gear: {defects: {}}}\n", "categories.gear.object: required, but not given"),
        ("categories: {gear: {object: 3}}\n", "categories.gear.object: Not of type NotEmptyStr: expected string or"),
        (
            "categories: {gear: {object: g, colour: red}}\n",
            "categories.gear.colour: unknown key; allowed keys: ['anomalous'",
        ),
        (
            "categories: {gear: {object: g, normal: 'shiny {object}'}}\n",
            "categories.gear.normal: Expected a <class 'tuple'>",
        ),
        ("categories: {gear: {object: g, defects: [rust]}}\n", "categories.gear.defects: Expected a <class 'dict'>"),
        (
            "categories: {gear: {object: g, defects: {rust: []}}}\n",
            "categories.gear.defects.rust: expected at least one",
        ),
        (
            "categories: {gear: {object: g, defects: {rust: ['{object} rusty', 3]}}}\n",
            "categories.gear.defects: Not of type NotEmptyStr: expected string or bytes-like object, got 'int'",
        ),
        (
            "categories: {gear: {object: g, defects: {rust: [rusty]}}}\n",
            "categories.gear.defects.rust[0]: 'rusty' must contain {object}",
        ),
        ("categories: {Gear: {object: g}, gear: {object: g}}\n", "categories.gear: same category as 'Gear'"),
        ("categories: {gear: {object: g}\n", "invalid YAML"),
    ],
)
def test_bad_yaml_errors_name_file_and_key(tmp_path: Path, text: str, expected: str) -> None:
    """Malformed catalogs raise errors naming the file and the key."""
    path = _write(tmp_path / "bad_prompts.yaml", text)
    with pytest.raises(PromptCatalogError) as info:
        PromptLibrary.from_yaml(path, packaged=False)
    message = str(info.value)
    assert message.startswith(f"{path}: ")
    assert expected in message


def test_missing_yaml_file_names_path(tmp_path: Path) -> None:
    """A missing catalog file is reported with its path."""
    path = tmp_path / "nowhere" / "prompts.yaml"
    with pytest.raises(FileNotFoundError, match="nowhere"):
        PromptLibrary.default().with_yaml(path)


def test_unknown_category_falls_back_with_one_warning(library: PromptLibrary) -> None:
    """An unknown category gets generic prompts and warns once."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        first = library.prompts_for("Rubber_Duck")
        again = [library.prompts_for(name) for name in ("Rubber_Duck", "rubber duck", "RUBBER-DUCK")]
        PromptLibrary.default().prompts_for("rubber_duck")
    fallback_warnings = [w for w in caught if "Rubber" in str(w.message) or "rubber" in str(w.message)]
    assert len(fallback_warnings) == 1
    message = str(fallback_warnings[0].message)
    assert "YAML" in message
    assert "--model.prompt_library PATH" in message and "PromptMAD(prompt_library=PATH)" in message
    assert "object: rubber duck" in message
    assert fallback_warnings[0].filename == __file__
    assert "a photo of a flawless rubber duck." in first.normal
    assert "a photo of a damaged rubber duck." in first.anomalous
    assert first.defects == {}
    assert all(prompts.normal == first.normal for prompts in again)
    _assert_well_formed(first)


def test_articles_follow_the_noun() -> None:
    """'a' becomes 'an' before a vowel-initial noun."""
    with pytest.warns(UserWarning, match="orange_widget"):
        prompts = PromptLibrary().prompts_for("orange_widget")
    assert "a photo of an orange widget." in prompts.normal
    assert "a photo of a flawless orange widget." in prompts.normal


def test_class_text_embeddings_are_normalised_means(library: PromptLibrary, minilm: TextEncoder) -> None:
    """Class embeddings are the normalised means of the sentence embeddings."""
    prompts = library.prompts_for("bottle")
    embeddings = class_text_embeddings(prompts, minilm)
    assert embeddings.shape == (2, minilm.embedding_dim)
    assert embeddings.dtype == torch.float32
    torch.testing.assert_close(embeddings.norm(dim=-1), torch.ones(2))
    expected_normal = F.normalize(minilm.encode(prompts.normal).mean(dim=0), dim=0)
    expected_anomalous = F.normalize(minilm.encode(prompts.anomalous).mean(dim=0), dim=0)
    torch.testing.assert_close(embeddings[0], expected_normal)
    torch.testing.assert_close(embeddings[1], expected_anomalous)
    # The anomalous row describes a broken bottle better than the normal row does, and vice versa.
    probes = minilm.encode(["a photo of a shattered bottle with a chipped rim.", "a photo of a clean, intact bottle."])
    similarity = probes @ embeddings.T  # (2 probes, 2 rows)
    assert similarity[0, 1] > similarity[0, 0]
    assert similarity[1, 0] > similarity[1, 1]
