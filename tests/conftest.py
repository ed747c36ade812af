"""Fixtures that start real servers (nginx-rtmp, mosquitto) on free localhost ports."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.servers import Mosquitto, NginxRtmp

pytest_plugins = ["tests.image_machine"]  # the image's QEMU machine, one per session


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Tests that turn the session's QEMU box off for good run after all others."""
    items.sort(key=lambda item: item.get_closest_marker("powers_off") is not None)


@pytest.fixture
def nginx(tmp_path: Path) -> Iterator[NginxRtmp]:
    server = NginxRtmp(tmp_path / "nginx")
    server.start()
    yield server
    server.stop()


@pytest.fixture
def mosquitto(tmp_path: Path) -> Iterator[Mosquitto]:
    broker = Mosquitto(tmp_path)
    broker.start()
    yield broker
    broker.stop()
