"""The editor protocol tests' model and server: each test module that does not define its own
``state`` and ``server`` gets a tiny Geex model (with FIM tokens) served by ``create_app``."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="module")
def state(tmp_path_factory):
    from tests.serve.editor_server import save_tiny_model, serving_state

    served = serving_state(save_tiny_model(tmp_path_factory.mktemp("editor") / "tiny-geex"))
    yield served
    served.engine.close()


@pytest.fixture(scope="module")
def server(state):
    from geex.serve.server import BackgroundServer, create_app

    with BackgroundServer(create_app(state)) as running:
        yield running
