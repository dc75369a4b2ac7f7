// Small DOM and formatting helpers shared by every view. Values shown here come
// from users (variables, messages, ids), so everything goes through textContent
// and createElement: `h()` has no way to take HTML, by design.

/**
 * h("tag.class1.class2", {attrs, on: {click}}, ...children) -> element.
 * Attributes: `class`, `text`, `dataset` and `hidden`/`disabled` booleans are
 * handled; any other key is set with setAttribute (never `style`: the CSP forbids it).
 */
export function h(spec, attrs = {}, ...children) {
  const [tag, ...classes] = spec.split(".");
  const el = document.createElement(tag || "div");
  if (classes.length) el.className = classes.join(" ");
  applyAttrs(el, attrs);
  append(el, children);
  return el;
}

const SVG_NS = "http://www.w3.org/2000/svg";

/** svg("rect", {x: 1}) -> an SVG element (attributes set as given). */
export function svg(tag, attrs = {}, ...children) {
  const el = document.createElementNS(SVG_NS, tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (value === undefined || value === null || value === false) continue;
    if (name === "text") el.textContent = value;
    else el.setAttribute(name, String(value));
  }
  append(el, children);
  return el;
}

function applyAttrs(el, attrs) {
  for (const [name, value] of Object.entries(attrs || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (name === "text") el.textContent = String(value);
    else if (name === "class") el.className = value;
    else if (name === "on") for (const [type, fn] of Object.entries(value)) el.addEventListener(type, fn);
    else if (name === "dataset") Object.assign(el.dataset, value);
    else if (name === "hidden" || name === "disabled" || name === "checked" || name === "selected" || name === "required")
      el[name] = Boolean(value);
    else if (name === "value") el.value = value;
    else el.setAttribute(name, value === true ? "" : String(value));
  }
}

function append(el, children) {
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
}

export function clear(el) {
  el.replaceChildren();
  return el;
}

/** Set text only when it differs (cheap to call every tick for hundreds of cells). */
export function setText(el, text) {
  if (el.textContent !== text) el.textContent = text;
}

// ---------------------------------------------------------------------- time

export function parseTime(iso) {
  if (!iso) return null;
  const t = Date.parse(iso);
  return Number.isNaN(t) ? null : t;
}

/** 4s, 3m 12s, 2h 05m, 3d 4h: compact, for table cells. */
export function ago(ms) {
  if (ms === null || ms === undefined || Number.isNaN(ms)) return "—";
  const s = Math.max(0, Math.floor(ms / 1000));
  if (s < 60) return `${s}s`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m}m ${String(s % 60).padStart(2, "0")}s`;
  const hours = Math.floor(m / 60);
  if (hours < 24) return `${hours}h ${String(m % 60).padStart(2, "0")}m`;
  return `${Math.floor(hours / 24)}d ${hours % 24}h`;
}

/** A step's duration in seconds as 0.4 ms, 12 ms, 1.52 s. */
export function duration(seconds) {
  if (seconds === null || seconds === undefined) return "—";
  const ms = seconds * 1000;
  if (ms < 1) return `${ms.toFixed(2)} ms`;
  if (ms < 1000) return `${ms.toFixed(ms < 10 ? 1 : 0)} ms`;
  return `${seconds.toFixed(2)} s`;
}

/** An ISO time as local HH:MM:SS.mmm (the date only when it is not today). */
export function clock(iso) {
  const t = parseTime(iso);
  if (t === null) return "—";
  const d = new Date(t);
  const time = d.toLocaleTimeString([], { hour12: false }) + "." + String(d.getMilliseconds()).padStart(3, "0");
  const today = new Date();
  if (d.toDateString() === today.toDateString()) return time;
  return `${d.toLocaleDateString()} ${time}`;
}

/** A value as one line of JSON, cut at `max` characters. */
export function jsonLine(value, max = 160) {
  let text;
  try {
    text = JSON.stringify(value);
  } catch {
    text = String(value);
  }
  if (text === undefined) text = "undefined";
  return text.length > max ? text.slice(0, max - 1) + "…" : text;
}

export function jsonPretty(value) {
  try {
    return JSON.stringify(value, null, 2);
  } catch {
    return String(value);
  }
}

/** Show a contact id masked: the server's contactMasked when there, else our own mask. */
export function maskedContact(summary) {
  if (summary.contactMasked) return summary.contactMasked;
  const raw = String(summary.contactId || "");
  if (raw.length <= 4) return "****";
  return raw.slice(0, Math.min(5, raw.length - 6)) + "****" + raw.slice(-2);
}

/** A short id for tables (the full one stays in the title and the link). */
export function shortId(id) {
  return id && id.length > 12 ? id.slice(0, 12) : id || "";
}
