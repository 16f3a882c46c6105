"""`bridge chat` against a real service on loopback: streaming, stdin, -i, Ctrl-C, errors."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from bridge.config import DEFAULT_MODEL_ID
from local_api.cli.main import main
from tests.support.cli import ANSWER, BRIDGE, Result, Service, interruptible, one_error_line
from tests.support.fakes import words

pytestmark = pytest.mark.usefixtures("config_dir")


def test_chat_sends_the_flags_and_prints_the_answer(
    logged_in: Service, cli: Callable[..., Result]
) -> None:
    result = cli("chat", "Capital of France?", "-m", DEFAULT_MODEL_ID, "-t", "0", "-n", "5",
                 "--seed", "7", "-v")
    assert result.code == 0, result.err
    assert result.out == " ".join(ANSWER.split()[:5]) + "\n"
    request = logged_in.fake.history[-1]
    assert (request.model, request.temperature, request.max_tokens, request.seed) == (
        DEFAULT_MODEL_ID, 0.0, 5, 7)
    assert request.messages[-1].content == "Capital of France?"
    assert result.err.startswith("[local · 5 tokens · conversation conv_")


def test_chat_prints_tokens_as_they_arrive(
    logged_in: Service, cli: Callable[..., Result], capsys: pytest.CaptureFixture[str]
) -> None:
    logged_in.fake.hang_after = 3  # three tokens, then the backend waits to be released
    codes: list[int] = []
    thread = threading.Thread(target=lambda: codes.append(main(["chat", "Tell me"])))
    thread.start()
    seen = ""
    try:
        assert logged_in.fake.hanging.wait(10)
        first_three = "".join(words(ANSWER)[:3])
        deadline = time.monotonic() + 10
        while seen != first_three and time.monotonic() < deadline:
            seen += capsys.readouterr().out
            time.sleep(0.02)
        assert seen == first_three  # printed while the rest of the answer is still to come
    finally:
        logged_in.fake.release()
        thread.join(10)
    assert codes == [0]
    assert seen + capsys.readouterr().out == ANSWER + "\n"


def test_chat_reads_the_prompt_from_stdin(logged_in: Service, cli: Callable[..., Result]) -> None:
    assert cli("chat", stdin="Summarize this.\n").out == ANSWER + "\n"
    assert logged_in.fake.history[-1].messages[-1].content == "Summarize this."
    assert "the prompt on stdin is empty" in one_error_line(cli("chat", stdin=""), 2)


def test_interactive_session_keeps_the_conversation(
    logged_in: Service, cli: Callable[..., Result]
) -> None:
    logged_in.fake.queue("Hello Ada.", "Your name is Ada.", "I do not know your name.")
    result = cli("chat", "-i", stdin="My name is Ada.\nWhat is my name?\n/new\nWho am I?\n/bye\n"
                 "never sent\n")
    assert result.code == 0, result.err
    assert result.out == "Hello Ada.\nYour name is Ada.\nI do not know your name.\n"
    first, second, third = logged_in.fake.history
    assert [m.content for m in second.messages] == ["My name is Ada.", "Hello Ada.",
                                                   "What is my name?"]
    assert [m.content for m in third.messages] == ["Who am I?"]  # /new: a fresh conversation
    assert len(logged_in.fake.history) == 3  # nothing after /bye


def test_ctrl_c_on_a_terminal_stops_the_answer_not_the_session(
    logged_in: Service, config_dir: Path
) -> None:
    import pexpect

    logged_in.fake.queue("one two three four five six", "Second answer.")
    logged_in.fake.hang_after = 2
    child = pexpect.spawn(BRIDGE, ["chat", "-i"], env=dict(os.environ), encoding="utf-8",
                          timeout=30, preexec_fn=interruptible)
    try:
        child.expect_exact(">>> ")
        child.sendline("Count to six.")
        child.expect_exact("one two")
        assert logged_in.fake.hanging.wait(10)
        logged_in.fake.hang_after = None
        child.sendintr()
        child.expect_exact("(answer stopped)")
        logged_in.fake.release()
        child.expect_exact(">>> ")
        child.sendline("Again?")
        child.expect_exact("Second answer.")
        child.expect_exact(">>> ")
        child.sendline("/bye")
        child.expect(pexpect.EOF)
    finally:
        child.close(force=True)
    assert child.exitstatus == 0
    assert [r.messages[-1].content for r in logged_in.fake.history] == ["Count to six.", "Again?"]


def test_interactive_session_reports_errors_and_goes_on(
    logged_in: Service, cli: Callable[..., Result]
) -> None:
    result = cli("chat", "-i", "-m", "no-such-model", stdin="Hello?\n")
    assert result.code == 0
    assert result.err == ("bridge: error: Model not found: no-such-model "
                          "(see `bridge models list`)\n")


def test_chat_errors_are_one_line_with_their_exit_code(
    logged_in: Service, cli: Callable[..., Result]
) -> None:
    err = one_error_line(cli("chat", "hi", "-m", "llama-99b"), 1)
    assert err == "bridge: error: Model not found: llama-99b (see `bridge models list`)\n"
    # listed as downloadable, not downloaded: say so, and how to get it
    err = one_error_line(cli("chat", "hi", "-m", "smollm2-360m-instruct"), 1)
    assert err == ("bridge: error: Model 'smollm2-360m-instruct' is not downloaded yet: run "
                   "`bridge models pull smollm2-360m-instruct` (or POST /api/v1/models/download"
                   ' {"model_id": "smollm2-360m-instruct"})\n')
    err = one_error_line(cli("chat", "hi", "-t", "5"), 2)  # the service refused it as invalid
    assert err == "bridge: error: parameters.temperature: must be at most 2\n"
    err = one_error_line(cli("chat", "hi", "--api-key", "cb_not_a_real_key"), 1)
    assert err == (f"bridge: error: the service refused the credentials (Invalid API key); "
                   f"run `bridge login --url {logged_in.url}`\n")
    assert logged_in.fake.history == []
