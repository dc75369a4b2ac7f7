// The 11 execution states (DESIGN §3) in one table: label, glyph and whether the
// state is terminal; and the outcomes, how a terminal execution ended. Badges
// carry the text and a glyph as well as a colour, so neither depends on colour
// alone; the colours live in style.css (`.badge.s-<state>`, `.outcome.o-<outcome>`),
// one each, for light and dark schemes.
//
// A state says where an execution is, an outcome what became of it: a conversation
// handed to a person ends `completed` with the outcome `escalated`. So wherever an
// execution is shown, an outcome other than its state's own is shown beside the
// state, and the state's badge then loses its colour: an escalated, expired or
// failed conversation never reads as a green "completed".

import { h } from "./dom.js";

export const STATES = [
  { id: "running", label: "running", glyph: "▶" },
  { id: "waiting_input", label: "waiting input", glyph: "…" },
  { id: "waiting_delay", label: "waiting delay", glyph: "◷" },
  { id: "recovering", label: "recovering", glyph: "↻" },
  { id: "paused", label: "paused", glyph: "‖" },
  { id: "fallback", label: "fallback", glyph: "↪" },
  { id: "degraded", label: "degraded", glyph: "◐" },
  { id: "completed", label: "completed", glyph: "✓", terminal: true },
  { id: "failed", label: "failed", glyph: "✕", terminal: true },
  { id: "cancelled", label: "cancelled", glyph: "⊘", terminal: true },
  { id: "timeout", label: "timeout", glyph: "⌛", terminal: true },
];

const BY_ID = new Map(STATES.map((s) => [s.id, s]));

/** Outcomes as the API names them. */
export const OUTCOMES = [
  { id: "completed", label: "completed", glyph: "✓", title: "the flow ran to one of its ends" },
  { id: "escalated", label: "escalated", glyph: "⇪", title: "handed to a person" },
  { id: "timeout", label: "timeout", glyph: "⌛", title: "no reply to a question in time, or a turn ran out" },
  { id: "expired", label: "expired", glyph: "☾", title: "the contact was silent for the flow's session timeout" },
  { id: "failed", label: "failed", glyph: "✕", title: "retries, fallbacks and escalation were exhausted" },
  { id: "invalid_input", label: "invalid input", glyph: "≠", title: "too many answers the flow could not accept" },
  { id: "cancelled", label: "cancelled", glyph: "⊘", title: "cancelled by an operator or replaced" },
];

const OUTCOME_BY_ID = new Map(OUTCOMES.map((o) => [o.id, o]));

export function outcomeOf(id) {
  return OUTCOME_BY_ID.get(id) || { id, label: id, glyph: "?", title: "" };
}

export function stateOf(id) {
  return BY_ID.get(id) || { id, label: id || "unknown", glyph: "?" };
}

const STATE_WORDS = new RegExp(`\\b(${STATES.map((s) => s.id).join("|")})\\b`, "g");

/** A server text with state ids written as the badges say them ("it is waiting_input" -> "it is waiting input"). */
export function humanizeStates(text) {
  return String(text ?? "").replace(STATE_WORDS, (id) => stateOf(id).label);
}

export function isTerminal(id) {
  return Boolean(BY_ID.get(id)?.terminal);
}

/** A badge element for `status`; update an existing one with setBadge. */
export function badge(status) {
  const el = h("span.badge");
  el.append(h("span.glyph", { "aria-hidden": "true" }), h("span.label"));
  setBadge(el, status);
  return el;
}

export function setBadge(el, status) {
  if (el.dataset.status === status) return;
  const state = stateOf(status);
  el.dataset.status = status;
  el.className = `badge s-${state.id}`;
  el.firstChild.textContent = state.glyph;
  el.lastChild.textContent = state.label;
}

/**
 * The state badge with the outcome's badge beside it when the outcome says more than
 * the state (`completed` + `escalated`); update with setStatusBadges. The outcome's
 * badge has its own class (not `.badge`), so `.badge` still finds the one state.
 */
export function statusBadges(status, outcome) {
  const el = h("span.statuses", {}, badge(status));
  setStatusBadges(el, status, outcome);
  return el;
}

export function setStatusBadges(el, status, outcome) {
  const stateBadge = el.firstChild;
  setBadge(stateBadge, status);
  const differs = Boolean(outcome) && outcome !== status;
  stateBadge.classList.toggle("overruled", differs); // its colour would say "fine"
  const shown = el.querySelector(".outcome");
  if (!differs) {
    shown?.remove();
    return;
  }
  if (shown?.dataset.outcome === outcome) return;
  const info = outcomeOf(outcome);
  const next = h(
    `span.outcome.o-${info.id}`,
    { dataset: { outcome }, title: `outcome: ${info.title || info.label}` },
    h("span.glyph", { "aria-hidden": "true", text: info.glyph }),
    h("span.label", { text: info.label }),
  );
  if (shown) shown.replaceWith(next);
  else stateBadge.after(next);
}
