// The variables panel: each top-level variable's value, who set it (the start,
// a step, or an operator) and its whole history, plus the edit form. An edit is
// an audited operator action: it goes through the confirmation dialog, which
// requires a reason, and is sent as PATCH .../variables (dotted paths). Values
// are typed explicitly (text or JSON) so "42" never silently becomes a number.
// After the change the focus goes back to the button that asked for it.

import { api } from "./api.js";
import { confirm, refocus, toast } from "./dialog.js";
import { clear, clock, h, jsonLine } from "./dom.js";
import { valueDetails } from "./panels.js";

export class VariablesPanel {
  /** executionId; onChanged(execution): called with the PATCH answer */
  constructor(executionId, { onChanged }) {
    this.executionId = executionId;
    this.onChanged = onChanged;
    this.body = h("tbody");
    this.empty = h("p.empty", { text: "No variables yet." });
    this.names = h("datalist", { id: "var-names" });
    this.path = h("input.mono", { id: "var-path", name: "path", required: true, list: "var-names", placeholder: "customer.tier", autocomplete: "off", spellcheck: "false" });
    this.kind = h("select", { id: "var-kind", name: "kind" }, h("option", { value: "text", text: "text" }), h("option", { value: "json", text: "JSON" }));
    this.value = h("input.mono", { id: "var-value", name: "value", autocomplete: "off", spellcheck: "false", placeholder: "new value" });
    this.save = h("button.btn.primary", { type: "submit", id: "var-set", text: "Set…" });
    this.unset = h("button.btn", { type: "button", id: "var-unset", text: "Unset…" });
    this.why = h("p.disabled-reason", { hidden: true });
    this.form = h(
      "form.var-form",
      { "aria-label": "Edit a variable" },
      h("h3", { text: "Edit a variable" }),
      h(
        "div.form-row",
        {},
        h("label.field", { for: "var-path" }, h("span", { text: "Path" }), this.path),
        h("label.field", { for: "var-kind" }, h("span", { text: "Type" }), this.kind),
        h("label.field.grow", { for: "var-value" }, h("span", { text: "Value" }), this.value),
        h("div.form-actions", {}, this.save, this.unset),
      ),
      this.names,
      this.why,
    );
    this.form.addEventListener("submit", (event) => {
      event.preventDefault();
      this.submit("set");
    });
    this.unset.addEventListener("click", () => this.submit("unset"));
    this.value.addEventListener("input", () => this.value.setCustomValidity(""));
    this.el = h(
      "div.panel-body",
      {},
      h(
        "div.table-wrap",
        {},
        h(
          "table.grid.compact.vars",
          { "aria-label": "Variables" },
          h("thead", {}, h("tr", {}, ["Name", "Value", "Set by", "History", ""].map((t) => h("th", { scope: "col", text: t })))),
          this.body,
        ),
      ),
      this.empty,
      this.form,
    );
  }

  /** answer: GET .../variables ({variables, history}) */
  update(answer) {
    const variables = answer.variables || {};
    const history = answer.history || {};
    const names = [...new Set([...Object.keys(variables), ...Object.keys(history)])].sort();
    this.empty.hidden = names.length > 0;
    clear(this.body);
    clear(this.names);
    for (const name of names) {
      const present = Object.hasOwn(variables, name);
      const entries = history[name] || [];
      const last = entries[entries.length - 1];
      const edit = h("button.btn.small", { type: "button", text: "Edit", "aria-label": `Edit ${name}` });
      edit.disabled = this.save.disabled;
      edit.addEventListener("click", () => this.fill(name, variables[name]));
      this.body.append(
        h(
          "tr",
          { dataset: { name } },
          h("th.mono", { scope: "row", text: name }),
          h("td.value", {}, present ? valueDetails(variables[name]) : h("span.muted", { text: "(unset)" })),
          h("td.setby", { text: last ? setter(last) : "—" }),
          h("td", {}, historyList(entries)),
          h("td", {}, edit),
        ),
      );
      this.names.append(h("option", { value: name }));
    }
  }

  /** Enable or disable editing: control is {allowed, reason} from the execution's controls. */
  setAllowed(control) {
    const allowed = Boolean(control?.allowed);
    for (const el of [this.save, this.unset, this.path, this.value, this.kind]) el.disabled = !allowed;
    for (const button of this.body.querySelectorAll("button")) button.disabled = !allowed;
    const reason = allowed ? "" : `Editing is not possible: ${control?.reason || "not allowed"}`;
    this.why.textContent = reason;
    this.why.hidden = allowed;
    this.save.title = reason;
    this.unset.title = reason;
  }

  fill(name, value) {
    this.path.value = name;
    if (typeof value === "string") {
      this.kind.value = "text";
      this.value.value = value;
    } else {
      this.kind.value = "json";
      this.value.value = value === undefined ? "" : JSON.stringify(value);
    }
    this.value.focus();
    this.value.select();
  }

  async submit(action) {
    const path = this.path.value.trim();
    if (!path) {
      this.path.reportValidity();
      return;
    }
    let value = this.value.value;
    if (action === "set" && this.kind.value === "json") {
      try {
        value = JSON.parse(value);
      } catch {
        this.value.setCustomValidity("Not valid JSON (choose type \"text\" for plain text).");
        this.value.reportValidity();
        return;
      }
    }
    const text = action === "set" ? `${path} = ${jsonLine(value, 200)}` : `Remove ${path}`;
    const answer = await confirm({
      title: action === "set" ? "Set a variable" : "Unset a variable",
      text,
      reasonRequired: true,
      confirmLabel: action === "set" ? "Set variable" : "Unset variable",
    });
    if (!answer) return;
    const opener = action === "set" ? this.save : this.unset;
    const body = action === "set" ? { set: { [path]: value } } : { unset: [path] };
    body.reason = answer.reason;
    try {
      const execution = await api(`/v1/executions/${encodeURIComponent(this.executionId)}/variables`, { method: "PATCH", body });
      toast(action === "set" ? `Variable ${path} set.` : `Variable ${path} removed.`, "ok");
      this.value.value = "";
      this.onChanged(execution);
    } catch (error) {
      toast(`Could not change ${path}: ${error.message}`, "error");
    }
    refocus(opener, this.path);
  }
}

function setter(entry) {
  if (entry.by === "operator") return `operator ${entry.actor || ""}`.trim();
  if (entry.by === "step") return `step ${entry.seq ?? ""}${entry.nodeId ? ` (${entry.nodeId})` : ""}`;
  return entry.by || "";
}

function historyList(entries) {
  if (!entries.length) return h("span.muted", { text: "—" });
  const list = h("ol.var-history");
  for (const entry of entries) {
    list.append(
      h(
        `li.by-${entry.by}`,
        {},
        h("span.by", { text: setter(entry) }),
        " ",
        entry.removed ? h("span.muted", { text: "(removed)" }) : h("code", { text: jsonLine(entry.value, 60) }),
        " ",
        h("time.muted", { datetime: entry.at || "", text: clock(entry.at) }),
      ),
    );
  }
  if (entries.length <= 3) return list;
  return h("details", {}, h("summary", { text: `${entries.length} changes` }), list);
}
