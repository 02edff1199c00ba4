"""The shared rule for a text field: trimmed, bounded, and not empty where required."""

from __future__ import annotations

import pytest

from services.runtime.errors import InvalidArgument
from services.runtime.text_fields import trimmed_text


def test_surrounding_white_space_is_dropped_and_inner_space_kept() -> None:
    assert trimmed_text("name", "  My  folder \n", most=20) == "My  folder"


def test_a_text_of_the_limit_passes_and_one_more_character_is_refused_naming_the_field() -> None:
    assert trimmed_text("note", "x" * 5, most=5) == "xxxxx"
    with pytest.raises(InvalidArgument) as refused:
        trimmed_text("note", " " + "x" * 6 + " ", most=5)
    assert refused.value.fields == [("note", "must be at most 5 characters")]


def test_empty_passes_unless_required_and_then_the_given_violation_is_named() -> None:
    assert trimmed_text("description", "   ", most=5) == ""
    with pytest.raises(InvalidArgument) as refused:
        trimmed_text("name", "   ", most=5, if_empty="is required")
    assert refused.value.fields == [("name", "is required")]
