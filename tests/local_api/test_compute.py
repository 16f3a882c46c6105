"""The compute wiring: idle models are unloaded by time alone, not only on the next request."""

from __future__ import annotations

import time
from pathlib import Path

from bridge.config import DEFAULT_MODEL_ID
from bridge.models.store import ModelStore
from bridge.router import Router
from tests.support.fakes import LocalFake


class IdleFake(LocalFake):
    """Drops its models in ``unload_idle`` after ``keep_alive`` seconds, as LocalBackend does."""

    def __init__(self, keep_alive: float) -> None:
        super().__init__()
        self.keep_alive, self.loaded_at = keep_alive, 0.0

    def load(self, model_id: str, device: str = "auto", quantization: str = "none") -> float:
        self.loaded_at = time.monotonic()
        return super().load(model_id, device, quantization)

    def unload_idle(self) -> list[str]:
        gone = []
        if time.monotonic() - self.loaded_at > self.keep_alive:
            gone, self.in_memory = sorted(self.in_memory), set()
        return gone


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


def test_asking_which_models_are_loaded_unloads_nothing(tmp_path: Path) -> None:
    """A status check is a question: "who can serve X" has no side effects."""
    from bridge.backends.local import LocalBackend

    local = LocalBackend(ModelStore(tmp_path / "models"), keep_alive=0)
    router = Router(local)
    assert router.serving(DEFAULT_MODEL_ID) == ["local"]
    assert router.serving("no-such-model") == []
    assert local.loaded_models() == [] and local.unload_idle() == []
