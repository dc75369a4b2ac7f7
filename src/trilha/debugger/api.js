// The one door to the /v1 API. Every call carries the key typed into the login
// form (kept in sessionStorage: it dies with the tab and never reaches a URL),
// every error becomes an ApiError holding the problem document's `detail`, and a
// 401 anywhere is reported once through onUnauthorized so the app can send the
// user back to the login form: a revoked key must not leave a half-working page.

const KEY_ITEM = "trilha.debugger.key";

let unauthorizedHandler = () => {};

export class ApiError extends Error {
  constructor(status, problem) {
    const detail = (problem && (problem.detail || problem.title)) || `HTTP ${status}`;
    super(detail);
    this.status = status;
    this.problem = problem || {};
  }
}

export function getKey() {
  return sessionStorage.getItem(KEY_ITEM);
}

export function setKey(key) {
  if (key) sessionStorage.setItem(KEY_ITEM, key);
  else sessionStorage.removeItem(KEY_ITEM);
}

export function onUnauthorized(handler) {
  unauthorizedHandler = handler;
}

export function reportUnauthorized() {
  unauthorizedHandler();
}

export function authHeaders(key = getKey()) {
  return key ? { Authorization: `Bearer ${key}` } : {};
}

/** A path with query parameters; empty values are left out. */
export function withQuery(path, params = {}) {
  const query = new URLSearchParams();
  for (const [name, value] of Object.entries(params)) {
    if (value === undefined || value === null || value === "" || value === false) continue;
    query.set(name, String(value));
  }
  const text = query.toString();
  return text ? `${path}?${text}` : path;
}

/**
 * The page's own view of an API URL the server handed out (an alert's evidence, an
 * error group's executions): `/v1/errors?…` is the Errors view, `/v1/executions?…`
 * the list, `/v1/outbox?…` the Outbox view, with the same query; null for anything
 * else, so a link from the server never leads off the debugger.
 */
export function viewOf(url) {
  if (typeof url !== "string" || !url) return null;
  let parsed;
  try {
    parsed = new URL(url, location.origin);
  } catch {
    return null;
  }
  if (parsed.origin !== location.origin) return null;
  if (parsed.pathname === "/v1/errors") return `/debugger/errors${parsed.search}`;
  if (parsed.pathname === "/v1/executions") return `/debugger/${parsed.search}`;
  if (parsed.pathname === "/v1/outbox") return `/debugger/outbox${parsed.search}`;
  return null;
}

/**
 * Call the API; resolves to the parsed JSON body (or null on 202/204 without one).
 * options: {method, body, signal, key, quiet401}
 */
export async function api(path, options = {}) {
  const headers = { Accept: "application/json", ...authHeaders(options.key) };
  const init = { method: options.method || "GET", headers, signal: options.signal };
  if (options.body !== undefined) {
    headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(options.body);
  }
  let response;
  try {
    response = await fetch(path, init);
  } catch (error) {
    if (error.name === "AbortError") throw error;
    throw new ApiError(0, { detail: "the server did not answer (network error)" });
  }
  const text = await response.text();
  let body = null;
  if (text) {
    try {
      body = JSON.parse(text);
    } catch {
      body = { detail: text.slice(0, 200) };
    }
  }
  if (!response.ok) {
    const error = new ApiError(response.status, body);
    if (response.status === 401 && !options.quiet401) unauthorizedHandler();
    throw error;
  }
  return body;
}

/** A message id the server has never seen: repeated ids are acknowledged and ignored. */
export function freshMessageId() {
  const bytes = new Uint8Array(8);
  crypto.getRandomValues(bytes);
  return "debugger-" + Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}
