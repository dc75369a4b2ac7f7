// Accessible tabs (WAI-ARIA tabs pattern): real buttons in a tablist, arrow
// keys / Home / End move between them, only the selected tab is in the Tab
// order. The selected tab is kept in the URL hash (replaceState, no history
// entry), so a reload or a shared link opens the same panel.

import { h } from "./dom.js";

/** tabs: [{id, label, el}] -> the tab widget; the first is selected unless the hash names one. */
export function tabWidget(tabs, label) {
  const wanted = location.hash.slice(1);
  const first = tabs.some((t) => t.id === wanted) ? wanted : tabs[0].id;
  const list = h("div.tablist", { role: "tablist", "aria-label": label });
  const panels = h("div.tabpanels");
  const buttons = new Map();
  const bodies = new Map();

  function select(id, focus = false) {
    for (const tab of tabs) {
      const on = tab.id === id;
      buttons.get(tab.id).setAttribute("aria-selected", String(on));
      buttons.get(tab.id).tabIndex = on ? 0 : -1;
      bodies.get(tab.id).hidden = !on;
    }
    if (focus) buttons.get(id).focus();
    history.replaceState(history.state, "", `${location.pathname}${location.search}#${id}`);
  }

  tabs.forEach((tab, i) => {
    const button = h("button.tab", {
      type: "button",
      role: "tab",
      id: `tab-${tab.id}`,
      "aria-controls": `panel-${tab.id}`,
      "aria-selected": String(tab.id === first),
      tabindex: tab.id === first ? "0" : "-1",
      text: tab.label,
    });
    const body = h(
      "div.tabpanel",
      { role: "tabpanel", id: `panel-${tab.id}`, "aria-labelledby": `tab-${tab.id}`, hidden: tab.id !== first },
      tab.el,
    );
    button.addEventListener("click", () => select(tab.id));
    button.addEventListener("keydown", (event) => {
      const moves = { ArrowRight: i + 1, ArrowLeft: i - 1, Home: 0, End: tabs.length - 1 };
      if (!(event.key in moves)) return;
      event.preventDefault();
      select(tabs[(moves[event.key] + tabs.length) % tabs.length].id, true);
    });
    buttons.set(tab.id, button);
    bodies.set(tab.id, body);
    list.append(button);
    panels.append(body);
  });
  return h("section.card.tabs-card", { "aria-label": label }, list, panels);
}
