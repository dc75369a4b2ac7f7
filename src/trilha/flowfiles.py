"""Reading flows from files and folders (JSON, or YAML by extension)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import yaml

from trilha.core.flow import MAX_FLOW_BYTES, Flow, NodeTypes, Problem, parse_flow
from trilha.errors import FlowError, FlowValidationError

FLOW_SUFFIXES = (".json", ".yaml", ".yml")


def read_flow_data(path: Path) -> tuple[Any, int]:
    """The parsed document and its size in bytes (:class:`FlowError` if unreadable)."""
    try:
        size = path.stat().st_size
        if size > MAX_FLOW_BYTES:
            return None, size
        raw = path.read_bytes()
    except OSError as exc:
        raise FlowError(f"{path}: cannot read: {exc.strerror or exc}") from exc
    try:
        if path.suffix.lower() in (".yaml", ".yml"):
            return yaml.safe_load(raw), size
        return orjson.loads(raw), size
    except (orjson.JSONDecodeError, yaml.YAMLError, UnicodeDecodeError) as exc:
        reason = " ".join(str(exc).split())  # the YAML parser's report spans lines
        raise FlowError(
            f"{path}: not valid {path.suffix.lstrip('.').upper() or 'JSON'}: {reason}"
        ) from exc


def check_flow_file(
    path: Path, node_types: NodeTypes | None = None
) -> tuple[Flow | None, list[Problem]]:
    try:
        data, size = read_flow_data(path)
    except FlowError as exc:
        return None, [Problem("", str(exc).removeprefix(f"{path}: "))]
    return parse_flow(data, node_types, source_bytes=size)


def load_flow_file(path: Path, node_types: NodeTypes | None = None) -> Flow:
    flow, problems = check_flow_file(path, node_types)
    if flow is None:
        errors = [p for p in problems if p.severity == "error"]
        raise FlowValidationError(errors, f"{path}: " + "; ".join(str(p) for p in errors[:5]))
    return flow


def flow_files(folder: Path) -> list[Path]:
    if not folder.is_dir():
        raise FlowError(f"{folder}: not a folder of flows")
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in FLOW_SUFFIXES and p.is_file())
