from __future__ import annotations

from pathlib import Path

import pytest

from cdc.settings import Settings

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def clean_settings(monkeypatch: pytest.MonkeyPatch) -> Settings:
    """Settings as `make deploy-files` makes the committed files: defaults, no CDC_* set."""
    import os

    for name in [n for n in os.environ if n.startswith("CDC_")]:
        monkeypatch.delenv(name)
    monkeypatch.chdir(ROOT)
    return Settings()
