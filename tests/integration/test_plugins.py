"""Third-party node types arrive through the ``trilha.processors`` entry-point group."""

from __future__ import annotations

import importlib
import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from trilha.errors import ConfigError
from trilha.processors.registry import Processors

PLUGIN = textwrap.dedent(
    """
    from typing import ClassVar, Literal
    from trilha import NodeBase, StepContext, StepResult

    class SmsNode(NodeBase):
        type: Literal["sms"]
        number: str

    class SmsProcessor:
        node_type: ClassVar[str] = "sms"
        node_model: ClassVar[type[SmsNode]] = SmsNode
        effectful: ClassVar[bool] = False

        async def run(self, node: SmsNode, ctx: StepContext) -> StepResult:
            return StepResult(messages=[f"SMS to {node.number}"])
    """
)


def install_plugin(root: Path, module: str, target: str) -> None:
    """Lay out a module and its dist-info as pip would, on a sys.path entry."""
    (root / f"{module}.py").write_text(PLUGIN)
    dist = root / f"{module}-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {module}\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text(f"[trilha.processors]\nsms = {target}\n")


def test_plugin_node_type_is_loaded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An installed package's entry point adds a node type, its model and its processor."""
    install_plugin(tmp_path, "trilha_sms_plugin", "trilha_sms_plugin:SmsProcessor")
    monkeypatch.syspath_prepend(str(tmp_path))
    importlib.invalidate_caches()
    processors = Processors.from_entry_points()
    assert processors.get("sms") is not None
    assert "sms" in processors.node_types.models
    assert processors.get("message") is not None  # built-ins come the same way


def test_broken_plugin_is_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A plugin whose entry point does not load fails with its name, not a bare traceback."""
    install_plugin(tmp_path, "trilha_bad_plugin", "trilha_bad_plugin:Missing")
    monkeypatch.syspath_prepend(str(tmp_path))
    importlib.invalidate_caches()
    with pytest.raises(ConfigError, match="'sms'"):
        Processors.from_entry_points()


def test_plugin_flow_runs_from_the_cli(tmp_path: Path) -> None:
    """With the plugin installed, `trilha run` validates and runs a flow using its node."""
    plugins = tmp_path / "site"
    plugins.mkdir()
    install_plugin(plugins, "trilha_sms_cli", "trilha_sms_cli:SmsProcessor")
    flow = {
        "id": "sms",
        "start": "a",
        "nodes": [
            {"id": "a", "type": "sms", "number": "+5511999999999", "next": "b"},
            {"id": "b", "type": "end"},
        ],
    }
    (tmp_path / "sms.json").write_text(json.dumps(flow))
    trilha = Path(sys.executable).parent / "trilha"
    env = {"PYTHONPATH": str(plugins), "PATH": "/usr/bin:/bin"}
    result = subprocess.run(
        [str(trilha), "run", "sms.json", "--json", "--store", "sqlite:///t.db"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["status"] == "completed"
    assert data["transcript"][0]["text"] == "SMS to +5511999999999"
