"""The connect body parsed once into one typed request per way, never changed."""

from __future__ import annotations

import copy

import pytest

from bridge.errors import ValidationError
from local_api.remote.connect_request import (
    ColabConnect,
    OpenAIConnect,
    RuntimeConnect,
    WorkerConnect,
    parse,
)


def test_each_way_is_its_own_type_and_the_body_is_left_alone() -> None:
    bodies = [
        ({"credentials": {"client_id": "i", "client_secret": "s"}, "ngrok_token": "t"},
         ColabConnect),
        ({"runtime_url": "http://h:8888", "token": "x", "tunnel": "none"}, RuntimeConnect),
        ({"worker_url": "http://h:1", "worker_secret": "s" * 16, "model_id": "m"}, WorkerConnect),
        ({"base_url": "http://h/v1", "api_key": "k"}, OpenAIConnect),
    ]
    for body, kind in bodies:
        before = copy.deepcopy(body)
        request = parse(body)
        assert isinstance(request, kind) and body == before
    openai = parse({"base_url": "http://h/v1"})
    assert isinstance(openai, OpenAIConnect) and openai.base_url == "http://h/v1"
    colab = parse(bodies[0][0])
    assert isinstance(colab, ColabConnect)
    launch = colab.launch
    assert (colab.accelerator, launch.tunnel, launch.package_spec) == ("T4", "ngrok", "")
    assert colab.common.timeout == 600.0 and colab.common.read_timeout == 60.0


@pytest.mark.parametrize(("body", "field"), [
    ({"worker_url": "http://h:1"}, "worker_secret"),
    ({"openai_base_url": "http://h", "token": "x"}, "token"),
    ({"runtime_url": "http://h", "tunnel": "ngrok"}, "ngrok_token"),
    ({"runtime_url": "http://h", "package_spec": "--index-url http://evil"}, "package_spec"),
])
def test_a_bad_body_is_refused_naming_the_field(body: dict, field: str) -> None:
    with pytest.raises(ValidationError) as caught:
        parse(body)
    assert caught.value.details["field"] == field


def test_exactly_one_way() -> None:
    with pytest.raises(ValidationError, match="exactly one"):
        parse({"worker_url": "http://h", "runtime_url": "http://h"})
