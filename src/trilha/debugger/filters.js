// The list's filters: read from and written to the URL query (a filtered view
// can be shared and survives a reload), shown as a form, and used to decide
// whether an execution that just started belongs in the list. Only the
// server can judge some filters (stuck, with errors, a contact id, which events
// show masked), so those leave new executions to the next reload.

import { api } from "./api.js";
import { h } from "./dom.js";
import { STATES } from "./status.js";

export const FILTERS = ["status", "flowId", "institutionId", "conversationId", "contactId", "stuck", "withErrors"];

export function readFilters() {
  const query = new URLSearchParams(location.search);
  const out = {};
  for (const name of FILTERS) out[name] = query.get(name) || "";
  out.stuck = out.stuck === "true" ? "true" : "";
  out.withErrors = out.withErrors === "true" ? "true" : "";
  return out;
}

export function formFilters(form) {
  const data = new FormData(form);
  const out = {};
  for (const name of FILTERS) out[name] = String(data.get(name) || "").trim();
  out.stuck = data.get("stuck") ? "true" : "";
  out.withErrors = data.get("withErrors") ? "true" : "";
  return out;
}

export function sameFilters(a, b) {
  return FILTERS.every((name) => (a[name] || "") === (b[name] || ""));
}

/** Whether a just-started execution (its folded first lines) belongs in the list. */
export function acceptsNew(filters, fold) {
  if (filters.stuck || filters.withErrors || filters.contactId) return false;
  const line = fold.started;
  if (filters.status && (fold.status || line.status) !== filters.status) return false;
  if (filters.conversationId && line.context?.conversationId !== filters.conversationId) return false;
  if (filters.flowId) {
    const flow = line.flowId || "";
    if (flow !== filters.flowId && flow.split("/").pop() !== filters.flowId) return false;
  }
  return true;
}

/** The filter form; `admin` keys may pick an institution, others see theirs. */
export function filterForm(filters, { admin, me }) {
  const status = h(
    "select",
    { name: "status", id: "f-status" },
    h("option", { value: "", text: "any state" }),
    STATES.map((s) => h("option", { value: s.id, text: s.label, selected: filters.status === s.id })),
  );
  const flow = h("select", { name: "flowId", id: "f-flow" }, h("option", { value: "", text: "any flow" }));
  if (filters.flowId) flow.append(h("option", { value: filters.flowId, text: filters.flowId, selected: true }));
  api("/v1/flows")
    .then((answer) => {
      for (const item of answer.flows || []) {
        if (item.flowId !== filters.flowId) flow.append(h("option", { value: item.flowId, text: item.flowId }));
      }
    })
    .catch(() => {}); // the select still offers "any flow"
  const text = (name, label, placeholder) =>
    h(
      "label.field.inline",
      {},
      h("span", { text: label }),
      h("input", { name, type: "search", value: filters[name], placeholder, autocomplete: "off", spellcheck: "false" }),
    );
  const check = (name, label, hint) =>
    h(
      "label.check",
      { title: hint },
      h("input", { type: "checkbox", name, value: "true", checked: filters[name] === "true" }),
      h("span", { text: label }),
    );
  const institution = admin
    ? text("institutionId", "Institution", "any")
    : h(
        "span.field.inline.fixed",
        { title: "a key sees its own institution only" },
        h("span", { text: "Institution" }),
        h("b", { text: me.institutionId || "" }),
      );
  return h(
    "form.filters",
    { role: "search", "aria-label": "Filter executions" },
    h("label.field.inline", { for: "f-status" }, h("span", { text: "Status" }), status),
    h("label.field.inline", { for: "f-flow" }, h("span", { text: "Flow" }), flow),
    institution,
    text("conversationId", "Conversation", "exact id"),
    text("contactId", "Contact", "exact id"),
    check("stuck", "Stuck", "active executions past their due time that nothing is moving on"),
    check("withErrors", "With errors", "an error now, or any failed step"),
  );
}

export function debounce(fn, ms) {
  let timer = 0;
  return (...args) => {
    clearTimeout(timer);
    timer = setTimeout(() => fn(...args), ms);
  };
}
