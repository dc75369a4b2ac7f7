// Where each bot message's delivery stands, as WhatsApp shows it: one tick sent,
// two delivered, two blue read, a red mark for a message the channel reported
// failed or trilha gave up on (dead), a clock while it is queued or being retried.
// The furthest receipt the channel reported wins (the server keeps it from going
// backwards); without one, the outbox's own state says it. Every mark carries a
// word as well as its glyph and colour ("read", "not delivered"...), and a title
// with the when and why, so none of it depends on colour alone.
//
// An execution with undelivered messages (dead, failed, or pending after a failed
// try or for longer than 30 s: the API's `undelivered`) is flagged in the list and
// on its page with how many.

import { clock, h, setText } from "./dom.js";

const PLURAL = (n, word) => `${n} ${word}${n === 1 ? "" : "s"}`;

/** What a bot message of the transcript shows: {id, glyph, label, title}, or null
 * when the answer says nothing of its delivery. */
export function deliveryState(entry) {
  const receipt = entry.delivery?.status;
  const when = entry.delivery?.at ? ` at ${clock(entry.delivery.at)}` : "";
  const tries = entry.attempts ?? 0;
  const lastError = entry.lastError ? `: ${entry.lastError}` : "";
  if (receipt === "read") return { id: "read", glyph: "✓✓", label: "read", title: `read by the contact${when}` };
  if (receipt === "delivered") return { id: "delivered", glyph: "✓✓", label: "delivered", title: `delivered to the contact's device${when}` };
  if (receipt === "failed") {
    const why = entry.delivery.error ? `: ${entry.delivery.error}` : "";
    return { id: "failed", glyph: "✕", label: "failed", title: `the channel reported it failed${when}${why}` };
  }
  if (entry.outbox === "dead") return { id: "dead", glyph: "✕", label: "not delivered", title: `given up after ${PLURAL(tries, "attempt")}${lastError}` };
  if (receipt === "sent") return { id: "sent", glyph: "✓", label: "sent", title: `the channel sent it${when}` };
  if (entry.outbox === "sent") return { id: "sent", glyph: "✓", label: "sent", title: "the channel accepted it; no receipt yet" };
  const next = entry.nextAttemptAt ? `; next try at ${clock(entry.nextAttemptAt)}` : "";
  if (entry.outbox === "pending")
    return { id: "pending", glyph: "◷", label: "retrying", title: `${PLURAL(tries, "failed attempt")}${next}${lastError}` };
  if (entry.outbox === "queued") return { id: "queued", glyph: "◷", label: "queued", title: `waiting to be sent${next}` };
  return null;
}

/** The mark beside a bot message's time (null when there is nothing to show). */
export function deliveryMark(entry) {
  const state = deliveryState(entry);
  if (!state) return null;
  const late = entry.undelivered && (state.id === "pending" || state.id === "queued");
  return h(
    `span.delivery.d-${state.id}${entry.undelivered ? ".undelivered" : ""}`,
    { dataset: { delivery: state.id }, title: late ? `late: ${state.title}` : state.title },
    h("span.ticks", { "aria-hidden": "true", text: state.glyph }),
    h("span.label", { text: state.label }),
  );
}

/** A flag for an execution's undelivered messages; hidden while there are none. */
export function undeliveredFlag(count = 0) {
  const el = h("span.undelivered-flag", { hidden: true }, h("span.glyph", { "aria-hidden": "true", text: "✕" }), h("span.label"));
  setUndelivered(el, count);
  return el;
}

export function setUndelivered(el, count) {
  const n = Number(count) || 0;
  el.hidden = n <= 0;
  el.dataset.count = String(n);
  setText(el.lastChild, n > 0 ? `${n} undelivered` : "");
  el.title = n > 0 ? `${PLURAL(n, "message")} not delivered: given up, reported failed, or still pending past due` : "";
}
