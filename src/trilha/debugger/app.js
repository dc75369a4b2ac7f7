// The page's entry point: who is logged in, which view is on screen, and the
// routing between them. Routes are real paths (/debugger/,
// /debugger/executions/<id>, /debugger/errors, /debugger/dependencies,
// /debugger/outbox, served index.html by the API) so a link to any of them can
// be shared and opened in a new tab. Each view is a mount(container, ctx) -> {unmount} pair that owns its
// fetches and streams, so leaving a view stops everything it started. The alert
// banner belongs to the page, not a view: an alert stays in sight on every view
// while it fires, and its links lead into the views.

import { api, getKey, onUnauthorized, setKey } from "./api.js";
import { AlertBanner } from "./counts.js";
import { mountDependencies } from "./dependencies.js";
import { setupDialog } from "./dialog.js";
import { h } from "./dom.js";
import { mountErrors } from "./errors.js";
import { mountExecution } from "./execution.js";
import { mountList } from "./list.js";
import { mountLogin } from "./login.js";
import "./metrics.js";
import { mountOutbox } from "./outbox.js";

const main = document.getElementById("main");
const state = { me: null, view: null, alerts: null };

function route() {
  const match = location.pathname.match(/^\/debugger\/executions\/([^/]+)\/?$/);
  if (match) return { name: "execution", id: decodeURIComponent(match[1]) };
  if (/^\/debugger\/errors\/?$/.test(location.pathname)) return { name: "errors" };
  if (/^\/debugger\/dependencies\/?$/.test(location.pathname)) return { name: "dependencies" };
  if (/^\/debugger\/outbox\/?$/.test(location.pathname)) return { name: "outbox" };
  return { name: "list" };
}

const VIEWS = {
  list: (ctx) => mountList(main, ctx),
  errors: (ctx) => mountErrors(main, ctx),
  dependencies: (ctx) => mountDependencies(main, ctx),
  outbox: (ctx) => mountOutbox(main, ctx),
};

function unmountView() {
  state.view?.unmount?.();
  state.view = null;
  main.replaceChildren();
  document.getElementById("counts").replaceChildren();
}

function render() {
  unmountView();
  if (!state.me) {
    showLogin();
    return;
  }
  const where = route();
  const ctx = { me: state.me, navigate };
  markView(where.name);
  state.view = where.name === "execution" ? mountExecution(main, where.id, ctx) : VIEWS[where.name](ctx);
}

/** The header's view links: the one on screen is marked (an execution is the list's). */
function markView(name) {
  const current = name === "execution" ? "list" : name;
  for (const link of document.querySelectorAll("#views a")) {
    if (link.dataset.view === current) link.setAttribute("aria-current", "page");
    else link.removeAttribute("aria-current");
  }
}

export function navigate(url, { replace = false } = {}) {
  if (replace) history.replaceState(null, "", url);
  else history.pushState(null, "", url);
  render();
  window.scrollTo(0, 0);
  main.focus({ preventScroll: true }); // screen readers and Tab start at the new view
}

function showIdentity() {
  const identity = document.getElementById("identity");
  const who = document.getElementById("who");
  document.getElementById("views").hidden = !state.me;
  if (!state.me) {
    identity.hidden = true;
    state.alerts?.stop();
    state.alerts = null;
    return;
  }
  state.alerts ??= new AlertBanner(document.getElementById("alerts"));
  const { institutionId, role, keyId } = state.me;
  who.replaceChildren(
    h("span.tenant", { title: "institution", text: institutionId || "all institutions" }),
    h(`span.role.r-${role}`, { title: "the key's role", text: role }),
    h("span.mono.keyid", { title: "key id", text: keyId || "" }),
  );
  identity.hidden = false;
}

function showLogin(message) {
  unmountView();
  state.view = mountLogin(main, {
    message,
    onLogin(me) {
      state.me = me;
      showIdentity();
      render();
    },
  });
}

function logout(message) {
  setKey(null);
  state.me = null;
  showIdentity();
  showLogin(message);
}

async function start() {
  setupDialog();
  document.getElementById("logout").addEventListener("click", () => logout("Logged out."));
  onUnauthorized(() => {
    if (state.me) logout("Your key is invalid or was revoked: log in again.");
  });
  document.addEventListener("click", (event) => {
    const link = event.target.closest("a[href]");
    if (!link || event.defaultPrevented || event.button !== 0) return;
    if (event.metaKey || event.ctrlKey || event.shiftKey || event.altKey || link.target) return;
    const url = new URL(link.href, location.href);
    if (url.origin !== location.origin || !url.pathname.startsWith("/debugger/")) return;
    event.preventDefault();
    navigate(url.pathname + url.search);
  });
  window.addEventListener("popstate", render);

  if (getKey()) {
    try {
      state.me = await api("/v1/me", { quiet401: true });
    } catch (error) {
      setKey(null);
      showLogin(error.status === 401 ? "Your key is invalid or was revoked: log in again." : error.message);
      return;
    }
    showIdentity();
    render();
  } else {
    showLogin();
  }
}

start();
