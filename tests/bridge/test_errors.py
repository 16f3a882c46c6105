"""The SDK and RemoteBackend raise the class an envelope's code names, else the most
general class of its HTTP status (never a narrower meaning the server did not say)."""

from __future__ import annotations

import pytest

from bridge import errors


@pytest.mark.parametrize(("code", "status", "expected"), [
    ("MODEL_NOT_FOUND", 404, errors.ModelNotFound),
    ("CONTEXT_LENGTH_EXCEEDED", 400, errors.ContextLengthExceeded),
    ("SOMETHING_NEW", 400, errors.ValidationError),
    ("SOMETHING_NEW", 404, errors.NotFound),
    ("SOMETHING_NEW", 503, errors.BackendUnavailable),
    ("SOMETHING_NEW", 418, errors.BridgeError),
])
def test_a_code_maps_to_its_class(code: str, status: int, expected: type) -> None:
    assert errors.error_for_code(code, status) is expected
