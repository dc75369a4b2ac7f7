"""Schemathesis against the served ``/openapi.json``: hundreds of generated requests
per key (operator, admin, none), valid and not, on every route but the live event
streams. The API never answers 5xx and never logs an internal error, and it answers
what its document says: documented statuses and media types, response bodies of the
documented shape, 405 with the path's methods in ``Allow``.

For the keys that can write, the stateful phase follows the document's links with
real ids: an execution's start answers its ``executionId``, which the routes of that
execution then take (``GET /v1/executions/{executionId}``, its history, steps, logs,
pause, cancel...). Its start is pinned to a flow that exists (the examples' ``faq``)
so that executions really start; link inference is off, so the links counted are the
document's own."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import EXAMPLES, Cli, start_api
from trilha.api.openapi import LINKS

SCHEMATHESIS = Path(sys.executable).parent / "schemathesis"
#: the fuzzer is not testing the rate limit (test_api_basics does): it would mostly
#: meet 429s, and a start refused so leaves the stateful phase nothing to follow.
#: Warnings and errors only on stdout: the harness reads the server's output when it
#: stops, and the INFO lines of hundreds of real executions would fill the pipe first
#: (the server then blocks on its next log line)
SETTINGS = """[channel]
kind = "memory"

[logging]
level = "WARN"

[api]
rate_limit_per_second = 100000
rate_limit_burst = 100000
"""
#: schemathesis.toml: the start's body names a flow of the examples (and, for an
#: admin key, acme); only the document's links are followed
FUZZ_CONFIG = """[phases.stateful.inference]
algorithms = []

[[operations]]
include-path = "/v1/executions"
include-method = "POST"
parameters = { "body.flowId" = "faq", "body.flowVersion" = 1, "body.institutionId" = "acme", \
"body.language" = "pt-BR", "body.replace" = true }
"""
CHECKS = [
    "not_a_server_error",
    "status_code_conformance",
    "content_type_conformance",
    "response_schema_conformance",
    "unsupported_method",
    "allow_header_conformance",
]
#: the checks of a 405's answer
METHOD_CHECKS = ("unsupported_method", "allow_header_conformance")
#: of the document's links, how many the stateful phase must have followed: the 13
#: routes of an execution and the conversation's messages are reached from a start;
#: a flow's and the outbox's need data the generator seldom makes valid
MIN_LINKS_COVERED = 10


@pytest.mark.parametrize("key", ["acme_operator", "admin", None])
def test_generated_requests_get_documented_answers(
    cli: Cli, tmp_path: Path, key: str | None
) -> None:
    api = start_api(cli, tmp_path, "--flows", str(EXAMPLES), config=SETTINGS)
    config = tmp_path / "schemathesis.toml"
    config.write_text(FUZZ_CONFIG, encoding="utf-8")
    headers = ["-H", f"Authorization: Bearer {api.keys[key]}"] if key else []
    # without a key every answer is 401 (the key is asked first, before the method or
    # the body is looked at): there is no id to follow, no 405 to check, and the
    # coverage phase's thousand edge cases would all meet the same 401
    phases = "coverage,fuzzing,stateful" if key else "fuzzing"
    checks = CHECKS if key else [c for c in CHECKS if c not in METHOD_CHECKS]
    result = subprocess.run(
        [
            str(SCHEMATHESIS),
            "--config-file",
            str(config),
            "run",
            f"{api.url}/openapi.json",
            *headers,
            "--phases",
            phases,
            "--checks",
            ",".join(checks),
            "--max-examples",
            "20" if key else "5",  # without a key each one meets the same 401
            "--seed",
            "20261127",
            # generous: a loaded machine can hold a request for seconds; a hang still shows
            "--request-timeout",
            "30",
            "--no-color",
            # live event streams never end by design; tests/acceptance/test_api_events.py
            # covers them (a generated request would only wait out its timeout)
            "--exclude-path-regex",
            "/events$",
        ],
        cwd=tmp_path,  # its example database stays out of the repository
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    report = result.stdout + result.stderr
    _, output = api.stop()  # its log says what a failure looked like from inside
    said = f"{report[-6000:]}\n--- server ---\n{output[-4000:]}"
    assert result.returncode == 0, said
    assert " passed" in report and "Server error" not in report, said
    if key is not None:
        links = re.search(r"API Links:\s+(\d+) covered / (\d+) selected", report)
        assert links is not None, said
        covered, selected = int(links[1]), int(links[2])
        assert selected == len(LINKS), said
        assert covered >= MIN_LINKS_COVERED, said
    assert "api.internal_error" not in output, output[-4000:]
