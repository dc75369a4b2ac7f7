// The login form: an API key, checked with GET /v1/me before it is kept (in
// sessionStorage, for this tab only). The key field is a password field so it
// is not shown over a shoulder or kept by the browser's autofill history.

import { api, setKey } from "./api.js";
import { h } from "./dom.js";

export function mountLogin(container, { message, onLogin }) {
  const input = h("input.mono", {
    id: "api-key",
    type: "password",
    name: "key",
    autocomplete: "off",
    spellcheck: "false",
    required: true,
    placeholder: "trk_…",
  });
  const error = h("p.form-error", { role: "alert", hidden: !message, text: message || "" });
  const submit = h("button.btn.primary", { type: "submit", text: "Log in" });
  const form = h(
    "form.login",
    { "aria-labelledby": "login-title" },
    h("h1", { id: "login-title", text: "Execution debugger" }),
    h("p.muted", { text: "Log in with an API key: the page sees and may do exactly what the key may." }),
    h("label.field", { for: "api-key" }, h("span", { text: "API key" }), input),
    error,
    h("div.form-actions", {}, submit),
  );
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const key = input.value.trim();
    if (!key) return;
    submit.disabled = true;
    error.hidden = true;
    try {
      const me = await api("/v1/me", { key, quiet401: true });
      setKey(key);
      onLogin(me);
    } catch (problem) {
      error.textContent =
        problem.status === 401 ? "This key is not valid, or it was revoked." : `Could not log in: ${problem.message}`;
      error.hidden = false;
      submit.disabled = false;
      input.select();
    }
  });
  container.append(h("section.login-wrap", {}, form));
  input.focus();
  return { unmount() {} };
}
