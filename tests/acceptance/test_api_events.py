"""Live events (SSE) from a real ``trilha serve``: an execution's events arrive while
the contact replies, a reconnection with Last-Event-ID gets exactly what it missed,
the tenant's stream is filtered and isolated, and SIGTERM does not wait for open
streams."""

from __future__ import annotations

import json
import queue
import signal
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from conftest import EXAMPLES, Api, Cli, module_api, start_api

CONFIG = '[channel]\nkind = "memory"\n\n[api]\nsse_ping_seconds = 0.5\n'
CPF = "123.456.789-09"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Api]:
    with module_api(tmp_path_factory, "events", "--flows", str(EXAMPLES), config=CONFIG) as api:
        yield api


@pytest.fixture
def served(server: Api) -> Api:
    """The module's server (the examples as shared flows, keep-alives every half
    second), with institutions of the test's own."""
    return server.tenant()


@pytest.fixture
def own_served(cli: Cli, tmp_path: Path) -> Api:
    """The API with the examples as shared flows, and keep-alives every half second, of
    the test's own: an admin's stream of every institution is exact; SIGTERM stops it."""
    return start_api(cli, tmp_path, "--flows", str(EXAMPLES), config=CONFIG)


@dataclass
class Event:
    id: int | None
    type: str
    data: dict[str, Any]
    received_at: float


@dataclass
class Stream:
    """One SSE response read on a thread: events into a queue, comments counted."""

    api: Api
    path: str
    key: str = "acme_operator"
    headers: dict[str, str] = field(default_factory=dict)
    params: dict[str, Any] = field(default_factory=dict)
    status: int | None = None
    comments: list[str] = field(default_factory=list)
    events: list[Event] = field(default_factory=list)
    ended: threading.Event = field(default_factory=threading.Event)
    opened: threading.Event = field(default_factory=threading.Event)
    error: BaseException | None = None

    def __post_init__(self) -> None:
        self._queue: queue.Queue[Event] = queue.Queue()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()
        assert self.opened.wait(10), "the stream did not open"

    def _read(self) -> None:
        headers = {"Authorization": f"Bearer {self.api.keys[self.key]}", **self.headers}
        try:
            with (
                httpx.Client(base_url=self.api.url, timeout=httpx.Timeout(10, read=5)) as client,
                client.stream("GET", self.path, headers=headers, params=self.params) as answer,
            ):
                self.status = answer.status_code
                self.content_type = answer.headers.get("content-type", "")
                if answer.status_code != 200:
                    self.body = json.loads(answer.read())
                    self.opened.set()
                    return
                fields: dict[str, str] = {}
                for line in answer.iter_lines():
                    if self._stop.is_set():
                        return
                    if line.startswith(":"):
                        self.comments.append(line)
                        self.opened.set()  # ": stream open": the subscription exists
                    elif line:
                        name, _, value = line.partition(":")
                        fields[name] = value.removeprefix(" ")
                    elif fields:
                        event = Event(
                            int(fields["id"]) if "id" in fields else None,
                            fields.get("event", "message"),
                            json.loads(fields["data"]),
                            time.time(),
                        )
                        self.events.append(event)
                        self._queue.put(event)
                        fields = {}
        except BaseException as exc:  # the test thread asserts on it
            self.error = exc
        finally:
            self.ended.set()
            self.opened.set()

    def until(self, check: Callable[[list[Event]], bool], timeout: float = 15) -> list[Event]:
        deadline = time.monotonic() + timeout
        while not check(self.events):
            assert self.error is None, repr(self.error)
            assert time.monotonic() < deadline, f"timed out; got {self.summary()}"
            time.sleep(0.02)
        return self.events

    def summary(self) -> list[tuple[int | None, str, str]]:
        return [(e.id, e.type, str(e.data.get("message"))) for e in self.events]

    @property
    def ids(self) -> list[int]:
        return [e.id for e in self.events if e.id is not None]

    def close(self) -> None:
        """Disconnect (at the next line: keep-alives come every half second)."""
        self._stop.set()
        self._thread.join(10)
        assert not self._thread.is_alive()


def trail_ids(api: Api, execution_id: str) -> list[int]:
    with sqlite3.connect(api.store.removeprefix("sqlite:///")) as conn:
        rows = conn.execute(
            "SELECT id FROM execution_logs WHERE execution_id = ? ORDER BY id", (execution_id,)
        ).fetchall()
    return [int(r[0]) for r in rows]


def start(client: httpx.Client, conversation: str, flow: str = "onboarding") -> str:
    answer = client.post(
        "/v1/executions",
        json={"flowId": flow, "conversationId": conversation, "contactId": f"k-{conversation}"},
    )
    assert answer.status_code == 201, answer.text
    execution_id: str = answer.json()["executionId"]
    return execution_id


def reply(client: httpx.Client, conversation: str, text: str) -> float:
    """Deliver the contact's message; when it was accepted (time.time())."""
    answer = client.post(
        f"/v1/conversations/{conversation}/messages",
        json={
            "messageId": f"{conversation}-{text}",
            "contactId": f"k-{conversation}",
            "text": text,
        },
    )
    assert answer.status_code == 202, answer.text
    return time.time()


def has(message: str, **metadata: Any) -> Callable[[list[Event]], bool]:
    def check(events: list[Event]) -> bool:
        return any(
            e.data.get("message") == message
            and all(e.data["context"].get("metadata", {}).get(k) == v for k, v in metadata.items())
            for e in events
        )

    return check


def test_an_execution_streams_live_and_resumes_with_exactly_what_it_missed(
    served: Api, cli: Cli
) -> None:
    with served.client() as acme:
        eid = start(acme, "conv-live")
        live = Stream(served, f"/v1/executions/{eid}/events")
        assert live.status == 200 and live.content_type.startswith("text/event-stream")
        # no Last-Event-ID: the execution's trail from its start, then what comes
        live.until(has("execution.state_changed", to="waiting_input"))
        first = live.events[0]
        assert first.type == "log" and first.data["message"] == "execution.started"
        assert {e.type for e in live.events} >= {"log", "node", "message", "state"}
        question = next(e for e in live.events if e.type == "message")
        assert question.data["message"] == "message.queued"
        for event in live.events:
            assert event.data["executionId"] == eid
            assert event.data["institutionId"] == served.institutions["acme"]
            assert event.data["flowId"] == "onboarding"
            assert event.data["context"]["conversationId"] == "conv-live"

        accepted = reply(acme, "conv-live", "Maria Silva")
        live.until(has("message.received"))
        live.until(has("message.queued", text="Thanks, Maria Silva. What is your CPF (11 digits)?"))
        got = next(e for e in live.events if e.data["message"] == "message.received")
        assert got.type == "message" and got.received_at - accepted < 5
        live.until(
            lambda ev: (
                ev[-1].data["message"] != "message.received"
                and has("execution.state_changed", to="waiting_input")(ev[-3:])
            )
        )
        seen = list(live.ids)
        assert seen == trail_ids(served, eid)  # in order, none missing, none twice
        live.close()

        # while nobody listens, the execution moves on: through the API, and in
        # another process (`trilha send` runs the step itself, on the same store)
        reply(acme, "conv-live", CPF)
        sent = cli("send", eid, "maria@example.com", "--store", served.store)
        assert sent.returncode == 0, sent.stderr
        assert "confirm" in json.dumps(acme.get(f"/v1/executions/{eid}").json())
        missed = [i for i in trail_ids(served, eid) if i > seen[-1]]
        assert missed

        again = Stream(
            served, f"/v1/executions/{eid}/events", headers={"Last-Event-ID": str(seen[-1])}
        )
        again.until(lambda ev: [e.id for e in ev] == missed)
        assert CPF not in json.dumps([e.data for e in again.events])  # masked on the wire
        again.close()
        # the query parameter does the same for clients that cannot set headers
        by_query = Stream(served, f"/v1/executions/{eid}/events", params={"lastEventId": seen[-1]})
        by_query.until(lambda ev: [e.id for e in ev] == missed)
        by_query.close()

        # the execution ends: its stream sends the last lines, an `end`, and closes
        resumed = Stream(
            served, f"/v1/executions/{eid}/events", headers={"Last-Event-ID": str(missed[-1])}
        )
        reply(acme, "conv-live", "yes")
        assert resumed.ended.wait(15), resumed.summary()
        assert resumed.error is None
        assert has("execution.state_changed", to="completed")(resumed.events)
        assert resumed.events[-1].type == "end" and resumed.events[-1].id is None
        assert resumed.events[-1].data == {"executionId": eid, "status": "completed"}
        assert resumed.ids == [i for i in trail_ids(served, eid) if i > missed[-1]]


def test_the_tenant_stream_starts_now_and_is_filtered_and_isolated(own_served: Api) -> None:
    served = own_served
    with (
        served.client() as acme,
        served.client("beta_operator") as beta,
    ):
        old = start(acme, "conv-old")
        deadline = time.monotonic() + 15
        while acme.get(f"/v1/executions/{old}").json()["status"] != "waiting_input":
            assert time.monotonic() < deadline
            time.sleep(0.02)
        everything = Stream(served, "/v1/events")
        faq_only = Stream(served, "/v1/events", params={"flowId": "faq"})
        completed = Stream(served, "/v1/events", params={"status": "completed"})
        viewer = Stream(served, "/v1/events", key="acme_viewer")
        beta_sees = Stream(served, "/v1/events", key="beta_operator")
        admin = Stream(served, "/v1/events", key="admin")

        onboarding = start(acme, "conv-onb")
        faq = start(acme, "conv-faq", "faq")
        theirs = start(beta, "conv-beta")
        for text in ("pix", "sim"):  # the FAQ answers, asks whether it helped, ends
            reply(acme, "conv-faq", text)
        everything.until(has("execution.ended", status="completed"))
        admin.until(lambda ev: {e.data["executionId"] for e in ev} >= {onboarding, faq, theirs})
        beta_sees.until(has("execution.state_changed", to="waiting_input"))
        time.sleep(0.5)  # anything that should not come has had its chance
        beta_sees.until(lambda _: ": keep-alive" in beta_sees.comments)  # every 0.5 s idle

        acme_ids = {e.data["executionId"] for e in everything.events}
        assert acme_ids == {onboarding, faq}  # from now: not `old`, and not beta's
        assert old not in {e.data["executionId"] for e in admin.events}
        assert {e.data["institutionId"] for e in everything.events} == {"acme"}
        assert {e.data["executionId"] for e in viewer.events} == {onboarding, faq}
        assert {e.data["executionId"] for e in beta_sees.events} == {theirs}
        assert {e.data["institutionId"] for e in admin.events} == {"acme", "beta"}

        assert faq_only.events and {e.data["flowId"] for e in faq_only.events} == {"faq"}
        assert completed.events and {e.data["status"] for e in completed.events} == {"completed"}
        assert has("execution.ended")(completed.events)
        assert {e.data["executionId"] for e in completed.events} == {faq}
        ids = everything.ids
        assert ids == sorted(ids) and len(set(ids)) == len(ids)

        # resuming the tenant stream replays what it missed, still only its own
        missed_from = everything.ids[0] - 1
        everything.close()
        again = Stream(served, "/v1/events", headers={"Last-Event-ID": str(missed_from)})
        again.until(lambda ev: len(ev) >= len(ids))
        assert again.ids[: len(ids)] == ids
        for stream in (again, faq_only, completed, viewer, beta_sees, admin):
            stream.close()


def test_another_tenant_gets_404_and_bad_requests_get_problems(served: Api) -> None:
    with (
        served.client() as acme,
        served.client("beta_operator") as beta,
        served.client(None) as anonymous,
    ):
        eid = start(acme, "conv-mine")
        foreign = Stream(served, f"/v1/executions/{eid}/events", key="beta_operator")
        assert foreign.status == 404 and foreign.body["status"] == 404
        assert "beta" not in json.dumps(foreign.body)
        absent = beta.get("/v1/executions/nope/events")
        assert absent.status_code == 404
        assert absent.json()["detail"] == foreign.body["detail"].replace(eid, "nope")
        assert anonymous.get(f"/v1/executions/{eid}/events").status_code == 401
        assert anonymous.get("/v1/events").status_code == 401
        bad = acme.get(f"/v1/executions/{eid}/events", headers={"Last-Event-ID": "x"})
        assert bad.status_code == 422 and bad.headers["content-type"].startswith(
            "application/problem+json"
        )
        assert acme.get("/v1/events", params={"status": "sleepy"}).status_code == 422
        assert acme.get("/v1/events", params={"lastEventId": -1}).status_code == 422
        openapi = acme.get("/openapi.json").json()["paths"]
        for path in ("/v1/events", "/v1/executions/{executionId}/events"):
            assert "text/event-stream" in openapi[path]["get"]["responses"]["200"]["content"]


def test_sigterm_with_open_streams_exits_at_once_and_cleanly(own_served: Api) -> None:
    served = own_served
    with served.client() as acme:
        eid = start(acme, "conv-term")
        streams = [
            Stream(served, "/v1/events"),
            Stream(served, "/v1/events", key="admin"),
            Stream(served, f"/v1/executions/{eid}/events"),
        ]
        streams[2].until(has("execution.state_changed", to="waiting_input"))
    started = time.monotonic()
    served.process.send_signal(signal.SIGTERM)
    for stream in streams:
        assert stream.ended.wait(15), "a stream outlived the server's stop"
        assert stream.error is None, repr(stream.error)
    code, output = served.stop(timeout=30)
    elapsed = time.monotonic() - started
    assert code == 0, output
    assert "api.stopped" in output and "Traceback" not in output
    assert "internal_error" not in output
    # at once: far from the 30 s graceful wait that open streams would otherwise hold it
    assert elapsed < 15, f"stopping took {elapsed:.1f}s"
