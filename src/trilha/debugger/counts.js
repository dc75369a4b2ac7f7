// What sits above the list: the per-state counts (chips in the header, each a
// link that filters the list by its state) and the alert banner. Both come from
// the server, which sees every execution, not just the page loaded: the counts
// are refetched at most every 2 s while events arrive (and every 15 s when
// quiet), the alerts every 15 s.

import { api, ApiError, withQuery } from "./api.js";
import { clear, h, setText } from "./dom.js";
import { metrics } from "./metrics.js";
import { STATES } from "./status.js";

const EVERY_MS = 2000;
const IDLE_MS = 15000;
const ALERTS_EVERY_MS = 15000;

export class StateCounts {
  /** nav: the header's element; filters: the list's (read at each refresh) */
  constructor(nav, filters, { admin }) {
    this.nav = nav;
    this.filters = filters;
    this.admin = admin;
    this.chips = new Map();
    this.last = 0;
    this.timer = 0;
    this.soon = false;
    this.gone = false;
    clear(nav);
    const total = h("a.count.total", { title: "every state" }, h("span.label", { text: "all" }), h("span.n", { text: "—" }));
    this.chips.set("", total);
    nav.append(total);
    for (const state of STATES) {
      const chip = h(
        `a.count.s-${state.id}`,
        { title: `${state.label}: show only these` },
        h("span.dot", { "aria-hidden": "true" }),
        h("span.label", { text: state.label }),
        h("span.n", { text: "—" }),
      );
      this.chips.set(state.id, chip);
      nav.append(chip);
    }
    this.mark();
  }

  /** Show which state the list is filtered by; each chip links to its filter. */
  mark() {
    for (const [id, chip] of this.chips) {
      const current = (this.filters.status || "") === id;
      chip.classList.toggle("current", current);
      if (current) chip.setAttribute("aria-current", "true");
      else chip.removeAttribute("aria-current");
      chip.href = withQuery("/debugger/", { ...this.filters, status: id });
    }
  }

  async refresh() {
    this.last = Date.now();
    this.soon = false;
    clearTimeout(this.timer);
    this.timer = setTimeout(() => this.refresh(), IDLE_MS);
    try {
      const institutionId = this.admin ? this.filters.institutionId : "";
      const answer = await api(withQuery("/v1/executions/counts", { institutionId }));
      if (this.gone) return;
      for (const state of STATES) setText(this.chips.get(state.id).lastChild, String(answer.counts?.[state.id] ?? 0));
      setText(this.chips.get("").lastChild, String(answer.total ?? 0));
      this.nav.removeAttribute("title");
      if (metrics.countsShownMs === null) requestAnimationFrame(() => (metrics.countsShownMs ??= performance.now()));
    } catch (error) {
      if (error instanceof ApiError && error.status !== 401) this.nav.title = `counts unavailable: ${error.message}`;
    }
  }

  /** Something changed: refresh now, or when 2 s have passed since the last time. */
  changed() {
    if (this.soon) return;
    const wait = this.last + EVERY_MS - Date.now();
    if (wait <= 0) {
      this.refresh();
      return;
    }
    this.soon = true;
    clearTimeout(this.timer);
    this.timer = setTimeout(() => this.refresh(), wait);
  }

  stop() {
    this.gone = true;
    clearTimeout(this.timer);
  }
}

export class AlertBanner {
  constructor(banner) {
    this.banner = banner;
    this.gone = false;
    this.timer = setInterval(() => this.refresh(), ALERTS_EVERY_MS);
    this.refresh();
  }

  async refresh() {
    let answer;
    try {
      answer = await api("/v1/alerts");
    } catch {
      return; // alerts are a nicety: the list works without them
    }
    if (this.gone) return;
    const firing = (answer.alerts || []).filter((a) => a.status === "firing");
    clear(this.banner);
    this.banner.hidden = firing.length === 0;
    if (!firing.length) return;
    const list = h("ul");
    for (const alert of firing) {
      list.append(
        h(
          "li",
          {},
          h("span.sev", { text: alert.severity || "alert" }),
          " ",
          h("span.mono", { text: alert.rule }),
          alert.instance ? h("span.muted", { text: ` (${alert.instance})` }) : null,
          ": ",
          alert.summary || `value ${alert.value} over ${alert.threshold}`,
        ),
      );
    }
    this.banner.append(h("strong", { text: `${firing.length} alert${firing.length > 1 ? "s" : ""} firing` }), list);
  }

  stop() {
    this.gone = true;
    clearInterval(this.timer);
    this.banner.hidden = true;
  }
}
