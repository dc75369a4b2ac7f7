"""What tracing costs a turn: bench/steps.py's run with tracing off, then on, in turns.

    python bench/tracing.py [--executions 500] [--nodes 10] [--rounds 3] [--store-dir DIR]

Each round runs steps.py's engine run (``--executions`` executions of ``--nodes`` set and
message nodes, real SQLiteStore with synchronous=FULL) twice: with tracing off, the way
every process runs without ``[tracing] endpoint``, and with tracing on through the
OpenTelemetry SDK (a span per turn and per node, a batch processor, an exporter that
drops what it is given, so the collector's cost is not counted). Rounds alternate the two
so a drift of the machine falls on both. Needs the ``otel`` extra. Figures are printed,
never asserted.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from collections.abc import Sequence
from typing import Any

from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult

from _report import add_store_dir, drop_store_folder, fmt, percentile, print_table, store_folder
from steps import run_engine
from trilha.observability import tracing


class Dropping(SpanExporter):
    """Takes every batch and keeps nothing: the cost measured is trilha's and the SDK's."""

    def __init__(self) -> None:
        self.spans = 0

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        self.spans += len(spans)
        return SpanExportResult.SUCCESS


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--executions", type=int, default=500)
    parser.add_argument("--nodes", type=int, default=10, help="set/message nodes per execution")
    parser.add_argument("--rounds", type=int, default=3, help="off/on pairs")
    parser.add_argument("--workers", type=int, default=2)
    add_store_dir(parser)
    args = parser.parse_args()
    run_args = argparse.Namespace(
        store=None,
        batch_size=64,
        store_level="DEBUG",
        log_level="none",
        log_file=None,
        metrics=False,
        workers=args.workers,
        nodes=args.nodes,
        executions=args.executions,
        start_concurrency=200,
    )
    results: dict[str, list[dict[str, Any]]] = {"off": [], "on": []}
    exported = 0
    for _ in range(args.rounds):
        for mode in ("off", "on"):
            folder = store_folder(args.store_dir)
            exporter = Dropping()
            provider = TracerProvider()
            provider.add_span_processor(BatchSpanProcessor(exporter, max_queue_size=65_536))
            if mode == "on":
                tracing.install(provider)
            try:
                results[mode].append(asyncio.run(run_engine(run_args, folder)))
            finally:
                tracing.shutdown()
                provider.shutdown()
                drop_store_folder(folder, args.store_dir)
            exported += exporter.spans
    rows = []
    for mode, runs in results.items():
        steps = sum(r["steps"] for r in runs)
        seconds = sum(r["run_seconds"] for r in runs)
        turns_ms = [t * 1000 for r in runs for t in r["turns"]]
        rows += [
            (f"tracing {mode}: durable steps/s", fmt(steps / seconds)),
            (f"tracing {mode}: claim -> durable p50", fmt(percentile(turns_ms, 0.5), "ms", 2)),
            (f"tracing {mode}: claim -> durable p90", fmt(percentile(turns_ms, 0.9), "ms", 2)),
        ]
    rows.append(("spans exported (tracing on)", fmt(exported)))
    print_table(
        f"{args.executions:,} executions x {args.nodes} nodes, {args.rounds} rounds each", rows
    )


if __name__ == "__main__":
    started = time.perf_counter()
    main()
    print(f"\nwall time {time.perf_counter() - started:.1f} s")
