// The confirmation dialog and the status line (toast). Every change an operator
// makes goes through confirm(): a real <dialog> (focus is trapped, Escape
// cancels) naming the action, with a reason field that ends up in the audit
// trail. The result of the call is then shown by toast(): success, or the
// problem document's `detail` as the server wrote it.

const $ = (id) => document.getElementById(id);

let pending = null;

/**
 * Ask before acting. options: {title, text, confirmLabel, reasonLabel, reasonRequired, noReason, danger}
 * Resolves to {reason} on Confirm, null on Cancel or Escape.
 */
export function confirm(options) {
  const dialog = $("confirm");
  const reason = $("confirm-reason");
  $("confirm-title").textContent = options.title;
  $("confirm-text").textContent = options.text || "";
  $("confirm-reason-label").textContent =
    options.reasonLabel || (options.reasonRequired ? "Reason (required, kept in the audit)" : "Reason (optional, kept in the audit)");
  reason.value = options.reason || "";
  reason.required = Boolean(options.reasonRequired);
  $("confirm-reason-field").hidden = Boolean(options.noReason);
  const ok = $("confirm-ok");
  ok.textContent = options.confirmLabel || "Confirm";
  ok.classList.toggle("danger", Boolean(options.danger));
  if (pending) pending(null);
  return new Promise((resolve) => {
    pending = (value) => {
      pending = null;
      if (dialog.open) dialog.close();
      resolve(value);
    };
    dialog.showModal();
    (options.noReason ? ok : reason).focus();
  });
}

export function setupDialog() {
  const dialog = $("confirm");
  const form = $("confirm-form");
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const reason = $("confirm-reason");
    if (reason.required && !reason.value.trim()) {
      reason.setCustomValidity("Give a reason: it is kept in the audit trail.");
      reason.reportValidity();
      return;
    }
    reason.setCustomValidity("");
    pending?.({ reason: reason.value.trim() });
  });
  $("confirm-reason").addEventListener("input", (event) => event.target.setCustomValidity(""));
  $("confirm-cancel").addEventListener("click", () => pending?.(null));
  $("toast").addEventListener("click", () => ($("toast").hidden = true));
  dialog.addEventListener("cancel", (event) => {
    event.preventDefault();
    pending?.(null);
  });
}

let toastTimer = 0;

/** Show `message` in the status line; kind: "ok" | "error" | "info". */
export function toast(message, kind = "info") {
  const el = $("toast");
  el.textContent = message;
  el.className = `toast ${kind}`;
  el.hidden = false;
  clearTimeout(toastTimer);
  toastTimer = setTimeout(() => (el.hidden = true), kind === "error" ? 12000 : 6000);
}
