"""A bounded schemathesis run over every operation of /api/v1/openapi.json, in-process.

Positive and negative cases, with the admin's token and without: no 5xx, every error in the
envelope. `make fuzz` runs the schemathesis CLI longer against a live server
(tests/support/fuzzing.py).
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode

from local_api import shutdown
from tests.support.fuzzing import Target, bad_headers, build, content_type, problem

EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "5"))
# Run last: logging out ends the admin's session for the operations after it.
LAST = ("POST", "/api/v1/auth/logout")


@pytest.fixture
def target(tmp_path: Path) -> Iterator[Target]:
    found = build(tmp_path / "home")
    yield found
    shutdown(found.app)


def _operations(schema: Any) -> list[Any]:
    ops = [result.ok() for result in schema.get_all_operations()]
    # /api/<x> serves the same views as /api/v1/<x>: fuzz each view once.
    ops = [op for op in ops if not (op.path.startswith("/api/") and not
                                    op.path.startswith("/api/v1/"))]
    return sorted(ops, key=lambda op: (op.method.upper(), op.path) == LAST)


def _fuzz(op: Any, mode: GenerationMode, headers: dict[str, str], fixed: dict[str, Any],
          failures: list[str]) -> int:
    """Run one operation's cases in one mode; returns how many were sent."""
    sent = 0

    @settings(max_examples=EXAMPLES, deadline=None, database=None, derandomize=True,
              phases=[Phase.explicit, Phase.generate], suppress_health_check=list(HealthCheck))
    @given(case=op.as_strategy(generation_mode=mode, **fixed))
    def run(case: Any) -> None:
        nonlocal sent
        sent += 1
        response = case.call(headers=headers)
        found = problem(op.path, response.status_code, content_type(response),
                        response.content) or bad_headers(response.headers)
        if found:
            who = "auth" if headers else "anonymous"
            failures.append(f"{op.method.upper()} {op.path} ({mode.value}, {who}): {found}\n"
                            f"    {case.as_curl_command()}")

    try:
        run()
    except Unsatisfiable:  # negative mode for an operation without any input: nothing to break
        assert mode is GenerationMode.NEGATIVE, op.path
    return sent


def test_every_operation_answers_in_the_envelope(target: Target) -> None:
    schema = schemathesis.openapi.from_wsgi("/api/v1/openapi.json", target.app)
    operations = _operations(schema)
    paths = {op.path for op in operations}
    assert {"/api/v1/db/backup", "/api/v1/db/restore/{backup_id}", "/v1/chat/completions",
            "/api/v1/generate", "/metrics", "/readyz", "/ollama/api/chat",
            "/ollama/api/pull"} <= paths
    failures: list[str] = []
    cases = 0
    started = time.monotonic()
    for op in operations:
        fixed: dict[str, Any] = {}
        if op.path == "/api/v1/admin/users/{user_id}":
            fixed["path_parameters"] = {"user_id": target.victim_id}  # never the admin
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            for headers in (target.admin, {}):
                cases += _fuzz(op, mode, headers, fixed, failures)
    elapsed = time.monotonic() - started
    print(f"fuzz: {len(operations)} operations, {cases} cases, {len(failures)} failures, "
          f"{elapsed:.0f} s")
    assert not failures, "\n".join(failures[:20])
    assert cases >= len(operations) * 4
