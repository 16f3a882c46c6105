"""A model the catalog lists as downloadable, asked for before it is downloaded: the answer
says so and names the command, on chat and load (not a bare "Model not found")."""

from __future__ import annotations

from flask.testing import FlaskClient

from tests.support.app import Auth

MODEL = "smollm2-360m-instruct"
HINT = f"not downloaded yet: run `bridge models pull {MODEL}`"


def test_downloadable_model_answers_not_downloaded_yet(client: FlaskClient, auth: Auth) -> None:
    auth.register()
    headers = auth.headers()
    listed = client.get("/api/v1/models", headers=headers).get_json()
    assert any(m.get("id", m.get("model_id")) == MODEL and m["status"] == "downloadable"
               for m in listed["models"])
    for path, body in (("/api/v1/chat/completion", {"prompt": "hi", "model_id": MODEL}),
                       ("/api/generate", {"prompt": "hi", "model": MODEL}),
                       ("/api/v1/models/load", {"model_id": MODEL})):
        answer = client.post(path, json=body, headers=headers)
        assert answer.status_code == 404, path
        error = answer.get_json()["error"]
        assert error["code"] == "MODEL_NOT_FOUND"
        assert HINT in error["message"], (path, error)
        assert error["details"] == {"model_id": MODEL, "status": "downloadable"}


def test_unknown_model_is_still_not_found(client: FlaskClient, auth: Auth) -> None:
    auth.register()
    answer = client.post("/api/v1/chat/completion", json={"prompt": "hi", "model_id": "x-9b"},
                         headers=auth.headers())
    assert answer.status_code == 404
    assert answer.get_json()["error"]["message"] == "Model not found"
