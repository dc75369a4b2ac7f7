"""``[tracing]``: its bounds, named in the error; what a span's URL keeps of a request's."""

from __future__ import annotations

from pathlib import Path

import pytest

from trilha.config import Config, load_config
from trilha.errors import ConfigError, NodeError
from trilha.observability.tracing import _safe_url, error_type


def config_error(tmp_path: Path, text: str) -> str:
    path = tmp_path / "trilha.toml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    return str(caught.value)


def test_the_defaults_trace_nothing(tmp_path: Path) -> None:
    """No ``[tracing]``: no endpoint; a full one reads every key, snake_case."""
    path = tmp_path / "trilha.toml"
    path.write_text(
        '[tracing]\nendpoint = "http://127.0.0.1:4318/v1/traces"\nservice_name = "bot"\n'
        'sample_ratio = 0.25\nheaders = { "x-key" = "${OTEL_KEY}" }\ntimeout_seconds = 3\n',
        encoding="utf-8",
    )
    tracing = load_config(path).tracing
    assert (tracing.service_name, tracing.sample_ratio, tracing.timeout_seconds) == (
        "bot",
        0.25,
        3,
    )
    assert Config().tracing.endpoint is None


@pytest.mark.parametrize(
    ("text", "named"),
    [
        ('endpoint = "127.0.0.1:4318"', "tracing.endpoint"),
        ('endpoint = "ftp://collector/v1/traces"', "tracing.endpoint"),
        ("sample_ratio = 1.5", "tracing.sample"),
        ("sample_ratio = -0.1", "tracing.sample"),
        ("timeout_seconds = 0", "tracing.timeout"),
        ("max_queue_spans = 0", "tracing.max"),
        ('service_name = ""', "tracing.service"),
        ('unknown = "x"', "tracing.unknown"),
    ],
)
def test_a_bad_value_is_refused_naming_it(tmp_path: Path, text: str, named: str) -> None:
    """Each bound ends in an error that names the key."""
    assert named in config_error(tmp_path, f"[tracing]\n{text}\n")


def test_a_missing_header_variable_is_named(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """``${NAME}`` not set: the start fails naming the header and the variable."""
    monkeypatch.delenv("OTEL_KEY_UNSET", raising=False)
    path = tmp_path / "trilha.toml"
    path.write_text(
        '[tracing]\nendpoint = "http://127.0.0.1:4318/v1/traces"\n'
        'headers = { "x-key" = "${OTEL_KEY_UNSET}" }\n',
        encoding="utf-8",
    )
    with pytest.raises(ConfigError, match=r"tracing\.headers\.x-key.*OTEL_KEY_UNSET"):
        load_config(path).tracing.resolved_headers()


def test_a_spans_url_keeps_no_credentials_nor_personal_data() -> None:
    """User and password dropped, a CPF in the path and a token in the query masked."""
    url = _safe_url("https://bot:pa55word@crm.example.com:8443/customers/52998224725?token=abc123")
    assert "pa55word" not in url and "bot:" not in url
    assert url.startswith("https://crm.example.com:8443/customers/")
    assert "52998224725" not in url
    assert "abc123" not in url


def test_the_error_type_is_the_failures_kind() -> None:
    """A described error's kind, a raised error's kind, else the exception's type."""
    assert error_type({"kind": "timeout", "type": "NodeTimeout"}) == "timeout"
    assert error_type({"type": "ValueError", "details": {"kind": "limit"}}) == "limit"
    assert error_type(None, NodeError("x", kind="connection")) == "connection"
    assert error_type(None, TimeoutError()) == "timeout"
    assert error_type(None, KeyError("x")) == "KeyError"
