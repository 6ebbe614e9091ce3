"""How an API process builds its app (`servicekit.asgi`)."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

from servicekit.asgi import FACTORY_ENV, app_of_this_process


class App:
    pass


def build() -> App:
    return App()


@pytest.fixture
def unfrozen() -> Iterator[None]:
    gc.unfreeze()
    yield
    gc.unfreeze()


@pytest.mark.usefixtures("unfrozen")
def test_the_app_is_built_and_what_is_alive_then_frozen(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(FACTORY_ENV, f"{__name__}:build")
    assert gc.get_freeze_count() == 0

    app = app_of_this_process()

    assert isinstance(app, App)
    assert gc.get_freeze_count() > 0
    assert not any(tracked is app for tracked in gc.get_objects())
