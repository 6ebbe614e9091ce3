"""Reading the predecessor's values and naming its variables in use."""

from __future__ import annotations

import pytest

from servicekit.aliases import aliases_in_use, go_bool, go_duration_seconds


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("10s", 10.0), ("1.5s", 1.5), ("500ms", 0.5), ("1m30s", 90.0), ("2h", 7200.0), ("3", 3.0)],
)
def test_go_durations_become_seconds(text: str, seconds: float) -> None:
    assert go_duration_seconds(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["", "10 s", "ten", "10x", "s"])
def test_other_text_is_not_a_duration(text: str) -> None:
    with pytest.raises(ValueError, match="duration"):
        go_duration_seconds(text)


@pytest.mark.parametrize(("text", "value"), [("1", True), ("T", True), ("false", False)])
def test_go_booleans(text: str, value: bool) -> None:
    assert go_bool(text) is value


def test_an_alias_in_use_is_named_and_says_which_wins() -> None:
    aliases = {"OLD_A": "NEW_A", "OLD_B": "NEW_B", "OLD_C": "NEW_C"}
    environ = {"OLD_A": "1", "OLD_B": "2", "NEW_B": "3", "NEW_C": "4"}
    assert aliases_in_use(environ, aliases) == [
        "OLD_A (the predecessor's name) is used as NEW_A",
        "OLD_B (the predecessor's name) is ignored: NEW_B is set and wins",
    ]
