"""The compute wiring: idle models are unloaded by time alone, not only on the next request."""

from __future__ import annotations

import time
from pathlib import Path

from bridge.model_store import DEFAULT_MODEL_ID, ModelStore
from bridge.router import Router
from tests.test_generation import LocalFake


class IdleFake(LocalFake):
    """Drops its models once asked after ``keep_alive`` seconds, as LocalBackend does."""

    def __init__(self, keep_alive: float) -> None:
        super().__init__()
        self.keep_alive, self.loaded_at = keep_alive, 0.0

    def load(self, model_id: str, device: str = "auto", quantization: str = "none") -> float:
        self.loaded_at = time.monotonic()
        return super().load(model_id, device, quantization)

    def loaded_models(self) -> list[str]:
        if time.monotonic() - self.loaded_at > self.keep_alive:
            self.in_memory.clear()
        return super().loaded_models()


def test_idle_model_is_unloaded_without_traffic(tmp_path: Path, make_app) -> None:  # type: ignore[no-untyped-def]
    fake = IdleFake(keep_alive=1)
    make_app(
        {"home": tmp_path / "h", "keep_alive": 1},
        router=Router(fake),
        local=fake,
        store=ModelStore(tmp_path / "models"),
    )
    fake.load(DEFAULT_MODEL_ID)
    assert fake.in_memory == {DEFAULT_MODEL_ID}
    deadline = time.monotonic() + 10
    while fake.in_memory and time.monotonic() < deadline:
        time.sleep(0.2)
    assert fake.in_memory == set()  # nobody called the API: the janitor did it
