// What sits above the views: the counts (chips in the header, per state and per
// outcome, each a link that filters the list by it) and the alert banner. Both
// come from the server, which sees every execution, not just the page loaded: the
// counts are refetched at most every 2 s while events arrive (and every 15 s when
// quiet), the alerts every 15 s.
//
// The banner is the start of an investigation: each alert links to the evidence
// the server names for it (the error groups since the breach began, the
// executions behind it; for dead messages, the Outbox view's dead list, where
// they are redriven from), opened in the debugger's own views, so the cause is a
// click away. Pending alerts (breaching, not firing yet) are shown as pending.

import { api, ApiError, viewOf, withQuery } from "./api.js";
import { clock, h, setText } from "./dom.js";
import { metrics } from "./metrics.js";
import { Throttled } from "./refresh.js";
import { OUTCOMES, STATES } from "./status.js";

const EVERY_MS = 2000;
const IDLE_MS = 15000;
const ALERTS_EVERY_MS = 15000;

export class StateCounts {
  /** nav: the header's element; filters: the list's (read at each refresh) */
  constructor(nav, filters, { admin }) {
    this.nav = nav;
    this.filters = filters;
    this.admin = admin;
    this.chips = new Map(); // state id ("" for all) -> chip
    this.outcomeChips = new Map(); // outcome id -> chip
    this.gone = false;
    this.throttle = new Throttled(() => this.load(), { everyMs: EVERY_MS, idleMs: IDLE_MS });
    const states = h("span.count-group", { role: "group", "aria-label": "per state" });
    const total = h("a.count.total", { title: "every state" }, h("span.label", { text: "all" }), h("span.n", { text: "—" }));
    this.chips.set("", total);
    states.append(total);
    for (const state of STATES) {
      const chip = h(
        `a.count.s-${state.id}`,
        { title: `${state.label}: show only these` },
        h("span.dot", { "aria-hidden": "true" }),
        h("span.label", { text: state.label }),
        h("span.n", { text: "—" }),
      );
      this.chips.set(state.id, chip);
      states.append(chip);
    }
    // hidden until the server answers per outcome
    this.outcomes = h("span.count-group.outcomes", { role: "group", "aria-label": "per outcome", hidden: true }, h("span.group-label", { text: "ended:" }));
    for (const outcome of OUTCOMES) {
      const chip = h(
        `a.count.outcome-count.o-${outcome.id}`,
        { title: `ended ${outcome.label} (${outcome.title}): show only these` },
        h("span.dot", { "aria-hidden": "true" }),
        h("span.label", { text: outcome.label }),
        h("span.n", { text: "—" }),
      );
      this.outcomeChips.set(outcome.id, chip);
      this.outcomes.append(chip);
    }
    nav.replaceChildren(states, this.outcomes);
    this.mark();
  }

  /** Show which state or outcome the list is filtered by; each chip links to its filter. */
  mark() {
    const current = (chip, on) => {
      chip.classList.toggle("current", on);
      if (on) chip.setAttribute("aria-current", "true");
      else chip.removeAttribute("aria-current");
    };
    for (const [id, chip] of this.chips) {
      current(chip, (this.filters.status || "") === id && (id !== "" || !this.filters.outcome));
      chip.href = withQuery("/debugger/", { ...this.filters, status: id, outcome: "" });
    }
    for (const [id, chip] of this.outcomeChips) {
      current(chip, this.filters.outcome === id);
      chip.href = withQuery("/debugger/", { ...this.filters, status: "", outcome: id });
    }
  }

  refresh() {
    return this.throttle.refresh();
  }

  async load() {
    try {
      const institutionId = this.admin ? this.filters.institutionId : "";
      const answer = await api(withQuery("/v1/executions/counts", { institutionId }));
      if (this.gone) return;
      for (const state of STATES) setText(this.chips.get(state.id).lastChild, String(answer.counts?.[state.id] ?? 0));
      setText(this.chips.get("").lastChild, String(answer.total ?? 0));
      this.outcomes.hidden = !answer.outcomes;
      for (const [id, chip] of this.outcomeChips) setText(chip.lastChild, String(answer.outcomes?.[id] ?? 0));
      this.nav.removeAttribute("title");
      if (metrics.countsShownMs === null) requestAnimationFrame(() => (metrics.countsShownMs ??= performance.now()));
    } catch (error) {
      if (error instanceof ApiError && error.status !== 401) this.nav.title = `counts unavailable: ${error.message}`;
    }
  }

  /** Something changed: refresh now, or when 2 s have passed since the last time. */
  changed() {
    this.throttle.changed();
  }

  stop() {
    this.gone = true;
    this.throttle.stop();
  }
}

export class AlertBanner {
  constructor(banner) {
    this.banner = banner;
    this.shown = ""; // what is on screen, so an unchanged answer does not rebuild it
    this.gone = false;
    this.timer = setInterval(() => this.refresh(), ALERTS_EVERY_MS);
    this.refresh();
  }

  async refresh() {
    let answer;
    try {
      answer = await api("/v1/alerts");
    } catch {
      return; // alerts are a nicety: the views work without them
    }
    if (this.gone) return;
    const alerts = (answer.alerts || []).filter((a) => a.status === "firing" || a.status === "pending");
    // firing first; a rebuild would move the focus off a link being tabbed to
    alerts.sort((a, b) => (a.status === b.status ? 0 : a.status === "firing" ? -1 : 1));
    const key = JSON.stringify(alerts.map((a) => [a.rule, a.instance, a.status, a.summary, a.evidence]));
    if (key === this.shown) return;
    this.shown = key;
    this.banner.replaceChildren();
    this.banner.hidden = alerts.length === 0;
    this.banner.classList.toggle("only-pending", alerts.length > 0 && alerts.every((a) => a.status === "pending"));
    if (!alerts.length) return;
    const firing = alerts.filter((a) => a.status === "firing").length;
    const pending = alerts.length - firing;
    const heading = [
      firing ? `${firing} alert${firing > 1 ? "s" : ""} firing` : "",
      pending ? `${pending} pending` : "",
    ].filter(Boolean);
    const list = h("ul");
    for (const alert of alerts) list.append(alertItem(alert));
    this.banner.append(h("strong", { text: heading.join(" · ") }), list);
  }

  stop() {
    this.gone = true;
    clearInterval(this.timer);
    this.banner.replaceChildren();
    this.banner.hidden = true;
  }
}

function alertItem(alert) {
  const pending = alert.status === "pending";
  const errors = viewOf(alert.evidence?.errors);
  const executions = viewOf(alert.evidence?.executions);
  const outbox = viewOf(alert.evidence?.outbox);
  const since = pending ? alert.activeAt : alert.firedAt || alert.activeAt;
  return h(
    `li.alert.a-${pending ? "pending" : "firing"}`,
    { dataset: { rule: alert.rule || "" } },
    h("span.sev", { text: pending ? "pending" : alert.severity || "alert" }),
    " ",
    h("span.mono", { text: alert.rule }),
    alert.instance ? h("span.muted", { text: ` (${alert.instance})` }) : null,
    ": ",
    alert.summary || `value ${alert.value} over ${alert.threshold}`,
    since ? h("span.muted", { text: ` · ${pending ? "breaching since" : "since"} ${clock(since)}` }) : null,
    errors || executions || outbox
      ? h(
          "span.evidence",
          {},
          errors ? h("a.evidence-errors", { href: errors, text: "See the errors behind it →" }) : null,
          executions ? h("a.evidence-executions", { href: executions, text: "the executions" }) : null,
          outbox ? h("a.evidence-outbox", { href: outbox, text: "See the undelivered messages →" }) : null,
        )
      : null,
  );
}
