// The operator controls of one execution: pause, resume, cancel, advance (to the
// next node or a chosen one), retry now, hand back (a conversation a person holds,
// to the handoff's next or a chosen node), and "send as contact". Whether each is
// possible comes from the server (`controls` on GET /v1/executions/{id}: the
// state table and the key's role decide, not the page); a control that makes
// no sense is disabled and says why, as visible text in the badges' words
// ("waiting input") with the server's own text in the title. Every action asks
// first (dialog.confirm) and reports the server's answer (toast), worded as
// what the server said at that moment: the execution may have moved on by the
// time the toast shows, and the header above follows it live. Afterwards the
// focus goes back to the button pressed, or the next control still enabled.

import { api, freshMessageId } from "./api.js";
import { confirm, refocus, toast } from "./dialog.js";
import { h, setText } from "./dom.js";
import { humanizeStates, isTerminal, stateOf } from "./status.js";

// `moves`: the execution goes on by itself right after the answer, so the toast
// says where it was when the server answered rather than where it is now
const ACTIONS = {
  pause: { label: "Pause", done: "Paused" },
  resume: { label: "Resume", done: "Resumed", moves: true },
  cancel: { label: "Cancel", title: "Cancel this execution?", confirm: "Cancel execution", dismiss: "Keep it", done: "Cancelled", danger: true },
  retry: { label: "Retry now", done: "Retrying the failed step now", moves: true },
  advance: { label: "Advance", done: "Advanced", moves: true },
  handback: { label: "Hand back", title: "Hand the conversation back to the bot?", done: "Handed back", moves: true },
};

/** The toast after `name` succeeded, from the server's answer `ex`. */
function doneText(name, ex) {
  const spec = ACTIONS[name];
  const at = ex.currentNodeId ? ` at ${ex.currentNodeId}` : "";
  if (!spec.moves) return `${spec.done}${at}.`;
  return `${spec.done} (it was ${stateOf(ex.status).label}${at} when the server answered).`;
}

export class Controls {
  /** execution: the first GET answer; onResult(execution): after a control succeeded */
  constructor(execution, { me, onResult, onMessageSent }) {
    this.execution = execution;
    this.me = me;
    this.onResult = onResult;
    this.onMessageSent = onMessageSent;
    this.buttons = {};
    this.reasons = {};
    this.el = h("section.controls", { "aria-label": "Operator controls", tabindex: "-1" });
    this.order = ["pause", "resume", "retry", "advance", "handback", "cancel", "message"];

    const group = (name, ...content) => {
      const reason = h("span.disabled-reason", { id: `why-${name}`, hidden: true });
      this.reasons[name] = reason;
      return h(`div.control.c-${name}`, {}, ...content, reason);
    };
    const button = (name) => {
      const spec = ACTIONS[name];
      const b = h(`button.btn${spec.danger ? ".danger" : ""}`, { type: "button", id: `do-${name}`, text: spec.label });
      b.addEventListener("click", () => this.act(name));
      this.buttons[name] = b;
      return b;
    };

    this.target = h("select", { id: "advance-to", "aria-label": "Advance to" }, h("option", { value: "", text: "next node" }));
    this.backTo = h("select", { id: "handback-to", "aria-label": "Hand back at" }, h("option", { value: "", text: "handoff's next" }));
    this.message = h("input", { id: "contact-text", type: "text", placeholder: "message as the contact", autocomplete: "off", "aria-label": "Message to send as the contact" });
    this.send = h("button.btn", { type: "submit", id: "do-message", text: "Send as contact" });
    this.buttons.message = this.send;
    const messageForm = h("form.send", { "aria-label": "Send a message as the contact" }, this.message, this.send);
    messageForm.addEventListener("submit", (event) => {
      event.preventDefault();
      this.sendMessage();
    });

    this.common = h("p.disabled-reason.common", { hidden: true });
    this.el.append(
      h(
        "div.control-row",
        {},
        group("pause", button("pause")),
        group("resume", button("resume")),
        group("retry", button("retry")),
        group("advance", h("div.joined", {}, button("advance"), this.target)),
        group("handback", h("div.joined", {}, button("handback"), this.backTo)),
        group("cancel", button("cancel")),
        group("message", messageForm),
      ),
      this.common,
    );
    this.update(execution);
  }

  setNodes(nodes) {
    for (const node of nodes) {
      const label = node.label && node.label !== node.id ? `${node.id} — ${node.label}` : node.id;
      this.target.append(h("option", { value: node.id, text: `${label} (${node.type})` }));
      this.backTo.append(h("option", { value: node.id, text: `${label} (${node.type})` }));
    }
  }

  pick(nodeId) {
    if (this.target.disabled) return;
    this.target.value = nodeId;
    this.target.focus();
  }

  update(execution) {
    this.execution = execution;
    const controls = controlsOf(execution, this.me);
    const disabledReasons = [];
    for (const name of Object.keys(this.reasons)) {
      const control = controls[name] || { allowed: false, reason: "not offered by the server" };
      const allowed = Boolean(control.allowed);
      const reason = allowed ? "" : control.reason || "not possible now";
      const b = this.buttons[name];
      b.disabled = !allowed;
      b.title = reason ? `Not possible: ${reason}` : ""; // the server's own words
      if (reason) b.setAttribute("aria-describedby", `why-${name}`);
      else b.removeAttribute("aria-describedby");
      if (name === "advance") this.target.disabled = !allowed;
      if (name === "handback") this.backTo.disabled = !allowed;
      if (name === "message") this.message.disabled = !allowed;
      setText(this.reasons[name], humanizeStates(reason));
      if (reason) this.reasons[name].title = reason;
      else this.reasons[name].removeAttribute("title");
      if (!allowed) disabledReasons.push(reason);
    }
    // when every control is off for the same reason (a viewer key, an ended
    // execution) say it once instead of under each button
    const same = disabledReasons.length === Object.keys(this.reasons).length && new Set(disabledReasons).size === 1;
    for (const el of Object.values(this.reasons)) el.hidden = same || !el.textContent;
    this.common.hidden = !same;
    setText(this.common, same ? `Controls are disabled: ${humanizeStates(disabledReasons[0])}` : "");
    this.common.title = same ? disabledReasons[0] : "";
  }

  /**
   * After an action: back to its button, else its counterpart (Pause <-> Resume),
   * else the next control still enabled, else the controls themselves.
   */
  restoreFocus(name) {
    const start = this.order.indexOf(name);
    const counterpart = { pause: "resume", resume: "pause" }[name];
    const next = [...this.order.slice(start + 1), ...this.order.slice(0, start)];
    const names = counterpart ? [counterpart, ...next.filter((n) => n !== counterpart)] : next;
    refocus(this.buttons[name], ...names.map((n) => (n === "message" ? this.message : this.buttons[n])), this.el);
  }

  async act(name) {
    const id = this.execution.executionId;
    const spec = ACTIONS[name];
    const body = {};
    let text = `${spec.label} execution ${id}.`;
    if (name === "advance") {
      const to = this.target.value;
      if (to) body.toNodeId = to;
      text = to
        ? `Move execution ${id} from ${this.execution.currentNodeId || "—"} to node ${to}.`
        : `Move execution ${id} from ${this.execution.currentNodeId || "—"} to that node's next.`;
    }
    if (name === "handback") {
      const to = this.backTo.value;
      if (to) body.nodeId = to;
      const queue = this.execution.heldBy?.queue;
      text = `The bot takes conversation ${this.execution.conversationId} back from the person${queue ? ` of queue ${queue}` : ""}, at ${to ? `node ${to}` : "the handoff's next node"}. What the contact said to the person is not read as an answer.`;
      if (this.me.role === "admin") body.institutionId = this.execution.institutionId;
    }
    if (name === "cancel") text += " It ends for good: this cannot be undone.";
    if (name === "retry") text += " The attempt counts toward the node's maxAttempts.";
    const answer = await confirm({
      title: spec.title || `${spec.label}?`,
      text,
      confirmLabel: spec.confirm || spec.label,
      dismissLabel: spec.dismiss || "Back",
      danger: spec.danger,
    });
    if (!answer) return;
    if (answer.reason) body.reason = answer.reason;
    this.buttons[name].disabled = true;
    try {
      const path =
        name === "handback"
          ? `/v1/conversations/${encodeURIComponent(this.execution.conversationId)}/handback`
          : `/v1/executions/${encodeURIComponent(id)}/${name}`;
      const execution = await api(path, { method: "POST", body });
      toast(doneText(name, execution), "ok");
      if (name === "advance") this.target.value = ""; // the choice was used: back to "next node"
      if (name === "handback") this.backTo.value = "";
      this.onResult(execution);
    } catch (error) {
      toast(`${spec.label} failed: ${error.message}`, "error");
      this.update(this.execution);
    }
    this.restoreFocus(name);
  }

  async sendMessage() {
    const text = this.message.value;
    if (!text.trim()) {
      this.message.focus();
      return;
    }
    const ex = this.execution;
    const held = ex.waitingFor === "human";
    const paused = ex.status === "paused" && !held;
    const note = held
      ? " A person holds the conversation: the message goes to them (the desk), not to the bot."
      : paused
        ? " The execution is paused: it reads the reply only once it is resumed."
        : "";
    const answer = await confirm({
      title: "Send as the contact?",
      text: `Send “${text}” to conversation ${ex.conversationId} as its contact (for testing).${note}`,
      confirmLabel: "Send",
      noReason: true,
    });
    if (!answer) return;
    const body = { messageId: freshMessageId(), contactId: ex.contactId, text };
    if (this.me.role === "admin") body.institutionId = ex.institutionId;
    try {
      await api(`/v1/conversations/${encodeURIComponent(ex.conversationId)}/messages`, { method: "POST", body });
      const after = held
        ? " A person holds the conversation: it went to them, not to the bot."
        : paused
          ? " The execution is paused: the reply waits until it is resumed."
          : "";
      toast(`Message sent as the contact.${after}`, "ok");
      this.message.value = "";
      this.onMessageSent();
    } catch (error) {
      toast(`Could not send: ${error.message}`, "error");
    }
    refocus(this.message, this.send, this.el);
  }
}

/**
 * The execution's controls as the server gave them; for a server that does not
 * send `controls` yet, the same rules derived here (role, then the state table).
 */
export function controlsOf(execution, me) {
  if (execution.controls) return execution.controls;
  const out = {};
  const names = ["pause", "resume", "cancel", "advance", "retry", "variables", "message", "handback"];
  const status = execution.status;
  for (const name of names) {
    let reason = null;
    if (me.role === "viewer") reason = "viewer keys may only read";
    else if (isTerminal(status)) reason = `it is ${status}`;
    else if (name === "pause" && status === "paused") reason = "it is paused";
    else if (name === "resume" && status !== "paused") reason = `it is ${status}, not paused`;
    else if (name === "retry" && status !== "recovering") reason = `it is ${status}, not recovering`;
    else if (name === "handback" && execution.waitingFor !== "human") reason = `it is ${status}; no person holds it`;
    else if ((name === "resume" || name === "advance") && execution.waitingFor === "human") reason = "a person holds the conversation";
    out[name] = { allowed: reason === null, reason };
  }
  return out;
}
