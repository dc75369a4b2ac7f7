// The 11 execution states (DESIGN §3) in one table: label, glyph and whether the
// state is terminal. Badges carry the text and a glyph as well as a colour, so
// the state never depends on colour alone; the colours live in style.css
// (`.badge.s-<state>`), one per state, for light and dark schemes.

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
