// The confirmation dialog and the status line (toast). Every change an operator
// makes goes through confirm(): a real <dialog> (focus is trapped, Escape
// cancels) naming the action, with a reason field that ends up in the audit
// trail; its two buttons never share a word ("Keep it" / "Cancel execution").
// The result of the call is then shown by toast(): success, or the problem
// document's `detail` as the server wrote it; Escape or its × dismisses it.
// Focus goes back where the operator was: to the control that opened the
// dialog when it is dismissed, and through refocus() after an action (the
// control may be disabled by then, so the caller names fallbacks).

const $ = (id) => document.getElementById(id);

let pending = null;

/**
 * Ask before acting. options: {title, text, confirmLabel, dismissLabel, reasonLabel, reasonRequired, noReason, danger}
 * Resolves to {reason} on Confirm, null on dismiss (its button or Escape), which
 * puts the focus back on the element that had it.
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
  $("confirm-cancel").textContent = options.dismissLabel || "Back";
  if (pending) pending(null);
  const opener = document.activeElement;
  return new Promise((resolve) => {
    pending = (value) => {
      pending = null;
      if (dialog.open) dialog.close();
      if (value === null) refocus(opener);
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
  $("toast").addEventListener("click", () => dismissToast());
  dialog.addEventListener("cancel", (event) => {
    event.preventDefault();
    pending?.(null);
  });
  document.addEventListener("keydown", (event) => {
    // Escape closes the dialog when one is open (its own cancel event), else the toast
    if (event.key !== "Escape" || dialog.open || $("toast").hidden) return;
    dismissToast();
  });
}

/** Focus the first of `candidates` that is on the page, shown and enabled. */
export function refocus(...candidates) {
  for (const el of candidates) {
    if (!el || !el.isConnected || el.disabled || el === document.body) continue;
    if (el.closest("[hidden]") || !el.getClientRects().length) continue;
    el.focus();
    if (document.activeElement === el) return el;
  }
  return null;
}

function dismissToast() {
  clearTimeout(toastTimer);
  $("toast").hidden = true;
}

let toastTimer = 0;

/** Show `message` in the status line; kind: "ok" | "error" | "info". */
export function toast(message, kind = "info") {
  const el = $("toast");
  $("toast-text").textContent = message;
  el.className = `toast ${kind}`;
  el.hidden = false;
  clearTimeout(toastTimer);
  toastTimer = setTimeout(() => (el.hidden = true), kind === "error" ? 12000 : 6000);
}
