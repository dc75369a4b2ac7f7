"""Assembling a running trilha from options: store, config, processors, engine, channel.

The CLI (and later the API server) build their parts here so that every
entry point wires them the same way.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

from trilha.channels.base import Channel
from trilha.channels.desk import HandoffDesk
from trilha.channels.memory import MemoryChannel
from trilha.channels.signing import WebhookSigner
from trilha.channels.terminal import TerminalChannel
from trilha.channels.webhook import WebhookChannel
from trilha.channels.whatsapp.channel import WhatsAppChannel
from trilha.config import Config, expand_env, load_config
from trilha.core.flow import Flow, Problem, dependencies_used
from trilha.core.tenancy import dependency_problems
from trilha.engine.clock import Clock, SystemClock
from trilha.engine.dispatcher import Dispatcher
from trilha.engine.engine import Engine
from trilha.engine.operator import Operator
from trilha.engine.worker import Worker
from trilha.errors import ConfigError
from trilha.flowfiles import flow_files, load_flow_file
from trilha.observability.logging import get_logger
from trilha.observability.metrics import Metrics
from trilha.processors.registry import Processors
from trilha.store import open_store
from trilha.store.base import Store

log = get_logger("trilha.runtime")


@dataclass(slots=True)
class Runtime:
    store: Store
    config: Config
    engine: Engine
    worker: Worker
    channel: Channel
    operator: Operator
    metrics: Metrics | None = None


def make_channel(config: Config) -> Channel:
    ch = config.channel
    if ch.kind == "webhook":
        if not ch.url:
            raise ConfigError("channel.url: required when channel.kind is 'webhook'")
        headers = {k: expand_env(v, f"channel.headers.{k}") for k, v in ch.headers.items()}
        return WebhookChannel(
            ch.url,
            headers=headers,
            timeout=ch.timeout_seconds,
            signer=WebhookSigner.of(ch.signing_secrets, "channel.signing_secrets"),
            renders=frozenset(ch.renders),
        )
    if ch.kind == "whatsapp":
        if ch.whatsapp is None:  # the configuration's own check refuses this first
            raise ConfigError("channel.whatsapp: required when channel.kind is 'whatsapp'")
        return WhatsAppChannel.from_config(ch.whatsapp)
    if ch.kind == "memory":
        return MemoryChannel()
    return TerminalChannel()


@asynccontextmanager
async def runtime(
    store_url: str | None,
    config_path: str | Path | None = None,
    *,
    channel: Channel | None = None,
    clock: Clock | None = None,
    config: Config | None = None,
    processors: Processors | None = None,
    must_exist: bool = False,
    with_metrics: bool = False,
) -> AsyncIterator[Runtime]:
    cfg = config or load_config(config_path)
    store = open_store(store_url, must_exist=must_exist)
    await store.open()
    processors = processors or Processors.from_entry_points()
    chan = channel or make_channel(cfg)
    clk = clock or SystemClock()
    metrics = (
        Metrics(top_institutions=cfg.metrics.top_institutions, top_flows=cfg.metrics.top_flows)
        if with_metrics
        else None
    )
    engine = Engine(
        store,
        processors=processors,
        config=cfg,
        clock=clk,
        metrics=metrics,
        renders=chan.renders,
        window_seconds=chan.window_seconds,
    )
    dispatcher = Dispatcher(
        store,
        chan,
        clock=clk,
        lease_seconds=cfg.engine.lease_seconds,
        max_attempts=cfg.channel.max_attempts,
        backoff_seconds=cfg.channel.backoff_seconds,
        max_backoff_seconds=cfg.channel.max_backoff_seconds,
        metrics=metrics,
        store_level=cfg.logging.store_level,
        dispatcher_id=f"dispatch-{engine.worker_id}",
        desk=make_desk(cfg),
    )
    try:
        yield Runtime(
            store, cfg, engine, Worker(engine, dispatcher), chan, Operator(store, engine), metrics
        )
    finally:
        await processors.aclose()
        await chan.aclose()
        if dispatcher.desk is not None:
            await dispatcher.desk.aclose()
        await store.close()


def make_desk(config: Config) -> HandoffDesk | None:
    """The human desk handoffs are announced to: the dependency named ``handoff``."""
    dep = config.dependencies.get("handoff")
    if dep is None:
        return None
    return HandoffDesk(
        dep.base_url,
        headers=dep.resolved_headers("handoff"),
        timeout=dep.timeout_seconds,
        signer=WebhookSigner.of(dep.signing_secrets, "dependencies.handoff.signing_secrets"),
        public_url=config.api.public_url,
    )


def load_folder(folder: Path, processors: Processors) -> list[Flow]:
    """Validate every flow file in ``folder``; one invalid file fails the whole folder."""
    return [load_flow_file(p, processors.node_types) for p in flow_files(folder)]


async def publish_all(rt: Runtime, flows: list[Flow]) -> None:
    """Publish ``flows``; a node calling a dependency the configuration does not declare
    is logged (WARN) now, rather than found when a contact reaches it (it would fail
    there and take its fallback)."""
    declared = set(rt.config.dependencies)
    for flow in flows:
        await rt.engine.publish(flow)
        for node_id, name in dependencies_used(flow):
            if name not in declared:
                log.warning(
                    "flow.dependency_undeclared",
                    flowId=flow.id,
                    nodeId=node_id,
                    dependency=name,
                    hint="declare it under [dependencies] in trilha.toml (or --config FILE)",
                )


def dependency_access_problems(flow: Flow, config: Config) -> list[Problem]:
    """The dependencies ``flow``'s owner may not call (DESIGN §9), as the problems that
    refuse its publication: the engine would refuse the calls anyway, when a contact
    reached them."""
    positions = {node.id: i for i, node in enumerate(flow.nodes)}
    declared = {name: dep.institutions for name, dep in config.dependencies.items()}
    return [
        Problem(f"nodes[{positions[node_id]}].dependency", reason)
        for node_id, reason in dependency_problems(flow.id, dependencies_used(flow), declared)
    ]


def warn_unsigned_webhooks(config: Config) -> None:
    """A webhook sent unsigned lets anyone who learns the receiver's URL speak as trilha;
    say so at start for each one, with how to sign it."""
    unsigned = []
    if config.channel.kind == "webhook" and not config.channel.signing_secrets:
        unsigned.append("channel")
    handoff = config.dependencies.get("handoff")
    if handoff is not None and not handoff.signing_secrets:
        unsigned.append("dependencies.handoff")
    if config.alerts.webhook is not None and not config.alerts.webhook.signing_secrets:
        unsigned.append("alerts.webhook")
    for where in unsigned:
        log.warning(
            "webhook.unsigned",
            webhook=where,
            hint=f'add signing_secrets = ["whsec_..."] under [{where}] so the receiver can'
            " check the Standard Webhooks signature",
        )


def warn_unowned_dependencies(config: Config) -> None:
    """A dependency with secret headers and no ``institutions`` serves only the shared
    flows; say so at start, since an operator who meant it for every institution's
    flows finds out only when their publication is refused."""
    for name, dep in sorted(config.dependencies.items()):
        if dep.headers and dep.institutions is None:
            log.warning(
                "dependency.unowned",
                dependency=name,
                hint=(
                    f'only shared flows may call it; add institutions = ["INSTITUTION"]'
                    f' (or ["*"]) under [dependencies.{name}] to let institutions\' flows'
                ),
            )
