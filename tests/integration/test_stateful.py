"""Random sequences of engine operations over a real SQLite file keep DESIGN §7 true.

A Hypothesis rule-based state machine publishes small flows, starts executions
(some colliding on a conversation, some replacing), delivers contact messages
(some duplicated), moves a fake clock past timers and input timeouts, runs the
worker and the dispatcher (some starts and replies race a worker tick), abandons
claims as a crashed worker would, and lets a "zombie" worker commit late under a
lease it lost. After every step it reads the store back and checks the invariants
of DESIGN §3 and §7.
"""

from __future__ import annotations

import asyncio
import itertools
import shutil
import tempfile
from collections import Counter, defaultdict
from collections.abc import Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    rule,
    run_state_machine_as_test,
)
from stateful_flows import FLOW_IDS, VARIANTS  # tests/integration is on sys.path (rootdir mode)
from stateful_support import CapturingStore, DbView

from trilha.channels.memory import MemoryChannel
from trilha.config import Config
from trilha.core.execution import Execution, checksum
from trilha.core.flow import load_flow
from trilha.core.states import TRANSITIONS, ExecutionStatus, Outcome
from trilha.engine.clock import FakeClock
from trilha.engine.dispatcher import Dispatcher
from trilha.engine.engine import Engine
from trilha.engine.worker import Worker
from trilha.errors import ConversationBusy, ExecutionEnded, FlowNotFound, StaleLease
from trilha.observability.checker import check_execution
from trilha.processors.registry import Processors
from trilha.store.sqlite import SQLiteStore

S = ExecutionStatus
T = TypeVar("T")

INSTITUTION = "inst-1"
CONVERSATIONS = 3
LEASE_SECONDS = 2.0
#: real seconds one store call or worker loop may take before the test calls it a hang
HANG_SECONDS = 30.0
#: who takes a zombie's executions over once its lease expired
SUCCESSORS = ("another worker", "same worker id", "same id, crashed")
PROCESSORS = Processors.from_entry_points()
CONFIG = Config.model_validate(
    {"engine": {"lease_seconds": LEASE_SECONDS, "max_steps_per_turn": 12}}
)


@dataclass(frozen=True)
class Delivered:
    """An inbound message the store acknowledged as accepted."""

    conversation_id: str
    message_id: str
    inbox_id: int
    execution_id: str | None
    text: str


def speaks(node_type: str | None, output: Any) -> bool:
    """Whether a step of these flows sends the contact exactly one message: every message,
    end and handoff node has a text; a question speaks when it asks or re-asks."""
    if node_type in ("message", "end", "handoff"):
        return True
    if node_type == "question" and isinstance(output, dict):
        return "asked" in output or ("invalid" in output and "gaveUp" not in output)
    return False


class EngineMachine(RuleBasedStateMachine):
    """Random operations on the real engine and SQLite store keep DESIGN §3/§7 invariants.

    Rules that need something to act on return early rather than use ``@precondition``:
    the racing rules (a worker ticking beside a start or a reply) end differently from one
    run to the next, and Hypothesis refuses a rule choice that depends on such state
    (``FlakyStrategyDefinition``) when it replays an example."""

    def __init__(self) -> None:
        super().__init__()
        self.loop = asyncio.new_event_loop()
        self.tmp = Path(tempfile.mkdtemp(prefix="trilha-stateful-"))
        self.store = SQLiteStore(self.tmp / "trilha.db", synchronous="OFF")
        self.loop.run_until_complete(self.store.open())
        self.db = DbView(self.store.path)
        self.clock = FakeClock()
        self.channel = MemoryChannel()
        self.engine = Engine(
            self.store, processors=PROCESSORS, config=CONFIG, clock=self.clock, worker_id="w1"
        )
        self.dispatcher = Dispatcher(self.store, self.channel, clock=self.clock)
        self.worker = Worker(self.engine, self.dispatcher)
        self.zombie_store = CapturingStore(self.store)
        self.zombie = Engine(
            self.zombie_store,
            processors=PROCESSORS,
            config=CONFIG,
            clock=self.clock,
            worker_id="zombie",
        )
        #: the zombie's process restarted under the same worker id, committing for real
        self.restarted = Engine(
            self.store, processors=PROCESSORS, config=CONFIG, clock=self.clock, worker_id="zombie"
        )
        self.published: dict[str, int] = {}  # flow id -> latest version
        self.published_as: dict[str, str] = {}  # flow id -> variant of the latest version
        self.executions: list[str] = []
        self.delivered: dict[tuple[str, str], Delivered] = {}
        self.by_execution: defaultdict[str, list[Delivered]] = defaultdict(list)
        self.counter = itertools.count(1)
        self.crashes = itertools.count(1)

    def teardown(self) -> None:
        try:
            self.db.close()
            self.loop.run_until_complete(self.store.close())
        finally:
            self.loop.close()
            shutil.rmtree(self.tmp, ignore_errors=True)

    # helpers ------------------------------------------------------------------------------

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        return self.loop.run_until_complete(asyncio.wait_for(coro, HANG_SECONDS))

    def active_execution(self, conversation_id: str) -> str | None:
        found = self.db.active_ids(INSTITUTION, conversation_id)
        assert len(found) <= 1, f"{conversation_id} has several active executions: {found}"
        return found[0] if found else None

    def active_executions(self) -> list[Execution]:
        ids = set(self.db.active_ids())
        return [self.run(self.store.get_execution(e)) for e in self.executions if e in ids]

    def all_executions(self) -> list[Execution]:
        found = self.run(self.store.list_executions(limit=100_000))
        assert sorted(e.id for e in found) == sorted(self.executions), "an execution was lost"
        return found

    def assert_outbox_drained(self) -> None:
        """After the dispatcher ran, nothing deliverable is left in the outbox."""
        now = self.clock.now()
        left = self.db.all(
            "SELECT idempotency_key FROM outbox WHERE status = 'pending' AND next_attempt_at <= ?"
            " AND (lease_expires_at IS NULL OR lease_expires_at < ?)",
            (now, now),
        )
        assert left == [], f"deliverable messages left in the outbox: {left}"

    def message_text(self, kind: str, node_id: str | None) -> str:
        n = next(self.counter)
        if kind == "fitting":  # what the current or next question accepts: go deeper
            kind = {"hello": "code", "ask_code": "code", "thanks": "rating", "rate": "rating"}.get(
                node_id or "", "free"
            )
        return {
            "code": f"ok-{n}",
            "rating": str(n % 5 + 1),
            "free": f"hello {n}",
            "bad": f"bad-{n}",
        }[kind]

    def record(
        self, result_status: str, message: Any, key: tuple[str, str], target: str | None
    ) -> None:
        """Check a delivery's answer against what was sent before, and remember it."""
        if key in self.delivered:
            known = self.delivered[key]
            assert result_status == "duplicate", f"message {key} was stored twice"
            assert message.id == known.inbox_id
            return
        assert result_status == "accepted", f"new message {key} answered {result_status}"
        assert message.execution_id == target, (message.execution_id, target)
        item = Delivered(key[0], key[1], message.id, target, message.text)
        self.delivered[key] = item
        if target is not None:
            self.by_execution[target].append(item)

    # rules --------------------------------------------------------------------------------

    @initialize(
        variants=st.fixed_dictionaries({"survey": st.booleans(), "followup": st.booleans()}),
        unpublished=st.sets(st.sampled_from(["detour", "followup", "ghost", "loop"]), max_size=1),
        starts=st.lists(st.sampled_from(FLOW_IDS), max_size=CONVERSATIONS),
    )
    def publish_and_start(
        self, variants: dict[str, bool], unpublished: set[str], starts: list[str]
    ) -> None:
        """Publish the flows (maybe one missing), and start a few conversations."""
        for name in sorted(VARIANTS):
            flow_id, _, variant = name.partition("-")
            if flow_id in unpublished or (variant and variant != "ab"[variants[flow_id]]):
                continue
            self.publish(name)
        for i, flow_id in enumerate(starts):
            self.start(i, flow_id, replace=False, vip=i == 1, limit=i + 3)

    @rule(name=st.sampled_from(sorted(VARIANTS)))
    def publish(self, name: str) -> None:
        flow = load_flow(VARIANTS[name], PROCESSORS.node_types)
        version = self.run(self.engine.publish(flow))
        previous, last_name = self.published.get(flow.id, 0), self.published_as.get(flow.id)
        # an unchanged definition keeps its version, a changed one is the next
        assert version == (previous if name == last_name else previous + 1), (name, version)
        self.published[flow.id], self.published_as[flow.id] = version, name

    @rule(
        conversation=st.integers(0, CONVERSATIONS - 1),
        flow_id=st.sampled_from(FLOW_IDS),
        replace=st.booleans(),
        vip=st.booleans(),
        limit=st.integers(1, 6),
    )
    def start(self, conversation: int, flow_id: str, replace: bool, vip: bool, limit: int) -> None:
        conv = f"conv-{conversation}"
        active = self.active_execution(conv)
        try:
            ex = self.run(
                self.engine.start(
                    flow_id,
                    institution_id=INSTITUTION,
                    conversation_id=conv,
                    contact_id=f"contact-{conversation}",
                    variables={"vip": vip, "n": 0, "limit": limit},
                    replace=replace,
                )
            )
        except FlowNotFound:
            assert flow_id not in self.published
            return
        except ConversationBusy:
            assert active is not None and not replace, "busy refused without an active execution"
            return
        assert flow_id in self.published
        assert active is None or replace, "a second active execution was created"
        assert ex.flow_version == self.published[flow_id]
        self.executions.append(ex.id)
        if active is not None:
            old = self.run(self.store.get_execution(active))
            assert old.status is S.CANCELLED and old.wake_at is None
        assert self.active_execution(conv) == ex.id

    @rule(
        pick=st.integers(0, 10_000),
        kinds=st.lists(
            st.sampled_from(["fitting", "fitting", "code", "rating", "free", "bad"]),
            min_size=1,
            max_size=3,
        ),
        by_conversation=st.booleans(),
    )
    def deliver(self, pick: int, kinds: list[str], by_conversation: bool) -> None:
        """A contact writes one to three messages in a row: to a chosen execution (an ended
        one refuses them), or to whatever is active in the chat (kept even if nothing is)."""
        if not self.executions:
            return
        execution = self.run(self.store.get_execution(self.executions[pick % len(self.executions)]))
        conv = execution.conversation_id
        for kind in kinds:
            message_id = f"m-{next(self.counter)}"
            text = self.message_text(kind, execution.current_node_id)
            if by_conversation:
                target = self.active_execution(conv)
                result = self.run(
                    self.store.deliver_inbound(
                        institution_id=INSTITUTION,
                        conversation_id=conv,
                        message_id=message_id,
                        contact_id=execution.contact_id,
                        text=text,
                        payload=None,
                        now=self.clock.now(),
                    )
                )
            elif self.run(self.store.get_execution(execution.id)).status.terminal:
                with pytest.raises(ExecutionEnded):
                    self.run(self.engine.send(execution.id, text, message_id=message_id))
                stored = self.db.one("SELECT id FROM inbox WHERE message_id = ?", (message_id,))
                assert stored is None, "a refused reply was stored"
                continue
            else:
                target = execution.id
                result = self.run(self.engine.send(execution.id, text, message_id=message_id))
            self.record(result.status, result.message, (conv, message_id), target)

    @rule(pick=st.integers(0, 10_000), by_conversation=st.booleans())
    def redeliver(self, pick: int, by_conversation: bool) -> None:
        """The platform repeats a message id: acknowledged as a duplicate, stored once."""
        if not self.delivered:
            return
        keys = list(self.delivered)
        conv, message_id = keys[pick % len(keys)]
        known = self.delivered[(conv, message_id)]
        same_chat = [
            e
            for e in self.executions
            if self.db.one(
                "SELECT 1 FROM executions WHERE id = ? AND conversation_id = ?", (e, conv)
            )
        ]
        if by_conversation or not same_chat:
            result = self.run(
                self.store.deliver_inbound(
                    institution_id=INSTITUTION,
                    conversation_id=conv,
                    message_id=message_id,
                    contact_id="whoever",
                    text="a different text " + known.text,
                    payload=None,
                    now=self.clock.now(),
                )
            )
        else:
            target = same_chat[pick % len(same_chat)]
            result = self.run(
                self.engine.send(target, "again " + known.text, message_id=message_id)
            )
        self.record(result.status, result.message, (conv, message_id), None)
        assert result.message.text == known.text

    @rule(pick=st.integers(0, 10_000))
    def converse(self, pick: int) -> None:
        """An active conversation moves on: its timer is reached, or the contact answers
        what it asks; then a worker handles it."""
        active = self.active_executions()
        if not active:
            return
        execution = active[pick % len(active)]
        if execution.status is S.WAITING_DELAY and execution.due_at is not None:
            self.clock.advance(max(0.0, execution.due_at - self.clock.now()))
            self.run(self.worker.run_until_idle(execution.id))
            return
        message_id = f"m-{next(self.counter)}"
        text = self.message_text("fitting", execution.current_node_id)
        result = self.run(self.engine.send(execution.id, text, message_id=message_id))
        self.record(
            result.status, result.message, (execution.conversation_id, message_id), execution.id
        )
        self.run(self.worker.run_until_idle(execution.id))

    @rule(
        conversation=st.integers(0, CONVERSATIONS - 1),
        flow_id=st.sampled_from(["survey", "loop"]),
        replace=st.booleans(),
    )
    def start_while_a_worker_runs(self, conversation: int, flow_id: str, replace: bool) -> None:
        """The API starts (or replaces) a conversation while a worker advances it: the start
        and the step commits may share one group transaction."""
        conv = f"conv-{conversation}"
        if flow_id not in self.published:
            return
        before = self.active_execution(conv)

        async def both() -> list[Any]:
            return await asyncio.gather(
                self.engine.start(
                    flow_id,
                    institution_id=INSTITUTION,
                    conversation_id=conv,
                    contact_id=f"contact-{conversation}",
                    variables={"vip": False, "n": 0, "limit": 2},
                    replace=replace,
                ),
                self.worker.tick(),
                return_exceptions=True,
            )

        started, ticked = self.run(both())
        assert isinstance(ticked, int), ticked
        if isinstance(started, ConversationBusy):
            assert not replace and before is not None, started
            return
        assert isinstance(started, Execution), started
        self.executions.append(started.id)
        if before is not None:
            old = self.run(self.store.get_execution(before))
            assert old.status.terminal, old
        assert self.active_execution(conv) in (started.id, None)

    @rule(pick=st.integers(0, 10_000))
    def reply_while_a_worker_runs(self, pick: int) -> None:
        """The contact answers while a worker advances the same execution."""
        if not self.executions:
            return
        execution = self.run(self.store.get_execution(self.executions[pick % len(self.executions)]))
        message_id = f"m-{next(self.counter)}"
        text = self.message_text("fitting", execution.current_node_id)

        async def both() -> list[Any]:
            return await asyncio.gather(
                self.engine.send(execution.id, text, message_id=message_id),
                self.worker.tick(),
                return_exceptions=True,
            )

        sent, ticked = self.run(both())
        assert isinstance(ticked, int), ticked
        if isinstance(sent, ExecutionEnded):
            assert self.run(self.store.get_execution(execution.id)).status.terminal
            return
        assert not isinstance(sent, BaseException), sent
        self.record(
            sent.status, sent.message, (execution.conversation_id, message_id), execution.id
        )

    @rule(seconds=st.sampled_from([0.5, 1.0, 3.0, 5.0, 10.0, 19.0, 21.0, 31.0, 46.0]))
    def advance_clock(self, seconds: float) -> None:
        self.clock.advance(seconds)

    @rule()
    def engine_run_once(self) -> None:
        """The engine advances what is due, without delivering."""
        self.run(self.engine.run_once())

    @rule()
    def worker_tick(self) -> None:
        self.run(self.worker.tick())
        self.assert_outbox_drained()

    @rule()
    def dispatch(self) -> None:
        self.run(self.dispatcher.run_once())
        self.assert_outbox_drained()

    @rule()
    def run_until_idle(self) -> None:
        """Work until nothing is due, leased or undelivered (sleeps move the fake clock)."""
        self.run(self.worker.run_until_idle())
        self.assert_outbox_drained()
        now = self.clock.now()
        for ex in self.all_executions():
            assert ex.lease_owner is None or (ex.lease_expires_at or 0) < now
            assert ex.status.terminal or ex.status.waiting, (ex.id, ex.status)
            assert ex.wake_at is None or ex.wake_at > now, (ex.id, ex.wake_at, now)
            if ex.status is S.WAITING_INPUT:  # nothing is due: every reply it got is applied
                unapplied = self.db.one(
                    "SELECT COUNT(*) FROM inbox WHERE execution_id = ? AND applied_at IS NULL",
                    (ex.id,),
                )[0]
                assert unapplied == 0, (ex.id, unapplied)

    @rule(limit=st.integers(1, 4))
    def crash_after_claim(self, limit: int) -> None:
        """A worker claims executions and dies: its leases must expire, nothing is lost."""
        self.run(
            self.store.claim_due(
                f"crashed-{next(self.crashes)}",
                now=self.clock.now(),
                lease_seconds=LEASE_SECONDS,
                limit=limit,
            )
        )

    @rule(limit=st.integers(1, 4), wakes=st.sampled_from(["later", *SUCCESSORS]))
    def zombie_runs_a_turn(self, limit: int, wakes: str) -> None:
        """A worker claims and runs a turn, but its commit is held back (a long GC pause);
        it wakes in a later step, or right after a successor took its executions over."""
        self.run(self.zombie.run_once(limit=limit))
        if wakes != "later":
            self.zombie_commits_late(wakes)

    @rule(successor=st.sampled_from(SUCCESSORS))
    def zombie_commits_late(self, successor: str) -> None:
        """The paused worker wakes after losing its lease: its commit is refused, no trace.

        The successor may even carry the zombie's worker id (a restarted process with a
        stable name), so only the fencing token can tell the late commit apart."""
        held, self.zombie_store.held = self.zombie_store.held, []
        if not held:
            return
        for commit in held:
            eid = commit.execution.id
            current = self.run(self.store.get_execution(eid))
            if current.fencing_token == commit.fencing_token:
                # nobody took it over yet: let the lease expire and a successor claim it
                self.clock.advance(LEASE_SECONDS + 0.5)
                if successor == "another worker":
                    taken = self.run(self.engine.run_once(execution_id=eid))
                elif successor == "same worker id":
                    taken = self.run(self.restarted.run_once(execution_id=eid))
                else:
                    taken = len(
                        self.run(
                            self.store.claim_due(
                                "zombie",
                                now=self.clock.now(),
                                lease_seconds=LEASE_SECONDS,
                                limit=1,
                                execution_id=eid,
                            )
                        )
                    )
                assert taken == 1, f"{eid} could not be taken over after its lease expired"
                current = self.run(self.store.get_execution(eid))
            assert current.fencing_token > commit.fencing_token
        before = self.db.snapshot()

        async def commit_all() -> list[BaseException | None]:
            now = self.clock.now()  # one gather: the commits share a group transaction
            return await asyncio.gather(
                *(self.store.commit_step(c, now=now) for c in held), return_exceptions=True
            )

        outcomes = self.run(commit_all())
        for commit, outcome in zip(held, outcomes, strict=True):
            assert isinstance(outcome, StaleLease), (commit.execution.id, outcome)
        assert self.db.snapshot() == before, "a refused late commit changed the store"

    @rule()
    def settle_everything(self) -> None:
        """With time passing and no more input, every execution ends and is fully delivered."""
        if len(self.executions) < 3:
            return
        for _ in range(12):
            self.clock.advance(121.0)
            self.run(self.worker.run_until_idle())
            if all(e.status.terminal for e in self.all_executions()):
                break
        pending = [(e.id, e.status) for e in self.all_executions() if not e.status.terminal]
        assert pending == [], f"executions never reached a terminal state: {pending}"
        rows = self.db.all("SELECT idempotency_key, status FROM outbox")
        assert all(status == "sent" for _, status in rows), rows
        assert {key for key, _ in rows} == self.channel.keys

    # invariants -----------------------------------------------------------------------------

    @invariant()
    def every_execution_is_terminal_claimable_or_waiting_on_something_named(self) -> None:
        """DESIGN §7: terminal, running and claimable, or waiting on something with a due time."""
        now = self.clock.now()
        for ex in self.all_executions():
            leased = ex.lease_owner is not None and (ex.lease_expires_at or 0) >= now
            if ex.status.terminal:
                assert ex.wake_at is None and ex.ended_at is not None, ex
                assert ex.outcome is not None, ex
            elif ex.status.waiting:
                expected = "input" if ex.status is S.WAITING_INPUT else "timer"
                assert ex.waiting_for == expected, (ex.id, ex.status, ex.waiting_for)
                assert ex.due_at is not None and ex.wake_at is not None, ex
                assert ex.wake_at <= ex.due_at, ex
            else:
                assert ex.status is S.RUNNING, (ex.id, ex.status)
                assert leased or (ex.wake_at is not None and ex.wake_at <= now), ex
            assert (ex.flow_id, ex.flow_version) in self.db.flow_versions(), ex

    @invariant()
    def trilha_check_finds_nothing(self) -> None:
        """The production checker (``trilha check``) agrees with the invariants below:
        no error on any execution, whatever the sequence (overdue work is only a warning:
        this clock jumps ahead with no worker running)."""
        now = self.clock.now()
        for ex in self.all_executions():
            found = self.run(check_execution(self.store, ex.id, now=now, grace=60.0))
            assert found is not None
            errors = [v for v in found if v.severity == "error"]
            assert errors == [], errors

    @invariant()
    def history_follows_the_transition_table(self) -> None:
        """Every state change is recorded, chained, allowed, and ends in the current status."""
        for ex in self.all_executions():
            history = self.run(self.store.transitions(ex.id))
            assert history, ex.id
            assert history[0].source is None and history[0].target is S.RUNNING
            for prev, cur in itertools.pairwise(history):
                assert cur.source is prev.target, (ex.id, prev, cur)
            for step in history:
                assert step.target in TRANSITIONS[step.source], (ex.id, step)
            assert history[-1].target is ex.status, (ex.id, history[-1], ex.status)

    @invariant()
    def each_message_is_in_the_outbox_once_and_delivered_at_most_once(self) -> None:
        """One outbox row per key and per step; the channel never saw a key twice."""
        assert self.channel.duplicates == 0
        outbox_keys: set[str] = set()
        for ex in self.all_executions():
            rows = self.run(self.store.outbox_for(ex.id))
            keys = [m.idempotency_key for m in rows]
            assert len(keys) == len(set(keys)), keys
            per_step = Counter(m.step_seq for m in rows)
            assert all(n == 1 for n in per_step.values()), (ex.id, per_step)
            checkpoints = self.run(self.store.checkpoints(ex.id))
            seqs = {c.seq for c in checkpoints}
            for m in rows:
                if m.idempotency_key.endswith(":end"):
                    assert ex.status.terminal and m.step_seq == ex.step_seq, (ex.id, m)
                else:
                    assert m.step_seq in seqs, (ex.id, m.step_seq, sorted(seqs))
            for c in checkpoints:  # and each step that speaks left its one message
                if speaks(c.node_type, c.output) and not c.error:
                    assert per_step[c.seq] == 1, (ex.id, c.seq, c.node_id, c.output)
            outbox_keys.update(keys)
        assert len(self.db.all("SELECT idempotency_key FROM outbox")) == len(outbox_keys)
        sent = {m.idempotency_key for m in self.channel.messages}
        assert len(sent) == len(self.channel.messages)
        assert sent <= outbox_keys, sent - outbox_keys
        positions = {m.idempotency_key: i for i, m in enumerate(self.channel.messages)}
        for conv, keys_in_order in self.db.outbox_order_by_conversation().items():
            order = [positions[k] for k in keys_in_order if k in positions]
            assert order == sorted(order), f"{conv}: delivered out of order"
        stored_sent = {
            k for (k,) in self.db.all("SELECT idempotency_key FROM outbox WHERE status = 'sent'")
        }
        assert stored_sent == sent, stored_sent ^ sent

    @invariant()
    def acknowledged_messages_are_stored_and_applied_in_order(self) -> None:
        """Accepted messages are durable; each execution applies its own in delivery order."""
        now = self.clock.now()
        inbox = self.db.inbox()
        assert len(inbox) == len(self.delivered), "an inbound message was stored twice or lost"
        for item in self.delivered.values():
            row = inbox.get(item.inbox_id)
            assert row is not None, f"acknowledged message {item} is not in the store"
            assert (row.conversation_id, row.message_id, row.text, row.execution_id) == (
                item.conversation_id,
                item.message_id,
                item.text,
                item.execution_id,
            )
        for ex in self.all_executions():
            mine = self.by_execution.get(ex.id, [])
            applied = [inbox[m.inbox_id].applied_step for m in mine]
            done = [step for step in applied if step is not None]
            assert applied[: len(done)] == done, f"{ex.id} skipped a message: {applied}"
            assert done == sorted(set(done)), f"{ex.id} applied out of order: {applied}"
            if ex.status is S.WAITING_INPUT and len(done) < len(mine):
                assert ex.wake_at is not None and ex.wake_at <= now, (
                    f"{ex.id} sleeps until {ex.wake_at} with an unapplied reply (now {now})"
                )
            checkpoints = {c.seq: c for c in self.run(self.store.checkpoints(ex.id))}
            for m, step in zip(mine, applied, strict=True):
                if step is not None:
                    consumed = checkpoints[step].input
                    assert consumed == {"messageId": m.message_id, "text": m.text}, (m, consumed)
            replies = [
                t.text for t in self.run(self.store.transcript(ex.id)) if t.sender == "contact"
            ]
            assert replies == [m.text for m in mine], (ex.id, replies)

    @invariant()
    def checkpoints_are_contiguous_and_sound(self) -> None:
        """Checkpoint seqs are 1..N with sound checksums; step_seq is N, or N+1 after a notice."""
        for ex in self.all_executions():
            checkpoints = self.run(self.store.checkpoints(ex.id))
            seqs = [c.seq for c in checkpoints]
            assert seqs == list(range(1, len(seqs) + 1)), (ex.id, seqs)
            assert ex.step_seq >= len(seqs), (ex.id, ex.step_seq, len(seqs))
            for c in checkpoints:
                assert checksum(c.state) == c.checksum, (ex.id, c.seq)
            if ex.step_seq > len(seqs):
                assert ex.step_seq == len(seqs) + 1 and ex.status.terminal, (ex.id, ex.step_seq)
                assert self.db.one(
                    "SELECT 1 FROM outbox WHERE idempotency_key = ?",
                    (f"{ex.id}:{ex.step_seq}:end",),
                ), f"{ex.id} skipped a step number without a final notice"

    @invariant()
    def failures_leave_a_trail_and_no_step_hit_an_internal_error(self) -> None:
        """A failed execution has an ERROR log line, an escalated one its handoff; no
        execution ended on an internal error; the trail never goes back in time."""
        for ex in self.all_executions():
            logs = self.run(self.store.logs(ex.id))
            internal = [r for r in logs if r.message == "execution.internal_error"]
            assert internal == [], (ex.id, internal)
            if ex.status is S.FAILED:
                assert any(r.level == "ERROR" for r in logs), ex.id
            handoffs = self.run(self.store.handoffs(ex.id))
            assert len(handoffs) == (1 if ex.outcome is Outcome.ESCALATED else 0), (ex.id, handoffs)
            times = [t.at for t in self.run(self.store.transitions(ex.id))]
            assert times == sorted(times), (ex.id, times)
            assert ex.created_at <= ex.updated_at <= self.clock.now()
            if ex.ended_at is not None:
                assert ex.created_at <= ex.ended_at <= self.clock.now()


@pytest.mark.slow
def test_random_operation_sequences_keep_the_design_invariants() -> None:
    """Random publish/start/deliver/clock/worker/crash/zombie sequences keep DESIGN §7 true."""
    run_state_machine_as_test(
        EngineMachine,
        settings=settings(max_examples=50, stateful_step_count=30, deadline=None),
    )
