// media-matrix pages: every change is a call to the API's own routes with the session's CSRF secret.
"use strict";

function csrf() {
  const m = document.cookie.match(/(?:^|;\s*)mm_csrf=([^;]*)/);
  return m ? decodeURIComponent(m[1]) : "";
}

function flash(message) {
  const box = document.getElementById("flash");
  if (!box) return;
  box.textContent = message;
  box.hidden = !message;
}

async function call(method, url, body) {
  const headers = { "X-CSRF-Token": csrf(), Accept: "application/json" };
  const options = { method, headers, credentials: "same-origin" };
  if (body instanceof FormData) {
    options.body = body;
  } else if (body !== undefined) {
    headers["Content-Type"] = "application/json";
    options.body = JSON.stringify(body);
  }
  const response = await fetch(url, options);
  let data = null;
  try { data = await response.json(); } catch (_e) { data = null; }
  if (!response.ok) {
    flash((data && data.detail) || `${response.status} ${response.statusText}`);
    return null;
  }
  flash("");
  return data;
}

document.addEventListener("htmx:configRequest", (e) => { e.detail.headers["X-CSRF-Token"] = csrf(); });

// Buttons that call one API route: data-action (POST), data-confirm, data-next (go there), data-report (show).
document.addEventListener("click", async (e) => {
  const button = e.target.closest("[data-action]");
  if (!button) return;
  if (button.dataset.confirm && !window.confirm(button.dataset.confirm)) return;
  button.disabled = true;
  const data = await call("POST", button.dataset.action);
  button.disabled = false;
  if (data === null) return;
  if (button.dataset.report) {
    const box = document.querySelector(button.dataset.report);
    box.hidden = false;
    box.textContent = (data.deliveries || []).map((d) => `${d.account || d.delivery}: ${d.outcome} ${d.detail || ""}`).join("\n");
    box.dataset.done = "1";
    return;
  }
  if (button.dataset.next) window.location.assign(button.dataset.next);
  else window.location.reload();
});

// Admin forms (users, policies): each names the API call it makes from its fields.
const FORMS = {
  "user-new": (f) => ["POST", "/users", {
    name: f.name.value, password: f.password.value,
    roles: [{ role: f.role.value, organization: Number(f.organization.value) }],
  }],
  "user-role": (f) => ["POST", `/users/${f.dataset.id}/roles`, { role: f.role.value, organization: Number(f.organization.value) }],
  "term-add": (f) => ["POST", `/organizations/${f.dataset.id}/terms`, {
    term: f.term.value, list: f.list.value, category: f.category.value, severity: f.severity.value,
  }],
  "chain": (f) => ["PUT", `/organizations/${f.dataset.id}/review-chain`, JSON.parse(f.chain.value.trim() || "null")],
  "flag-keep": (f) => ["POST", `/live-flags/${f.dataset.id}/keep`, { reason: f.reason.value }],
  "proposal": (f) => ["POST", "/moderation/proposals", {
    organization: Number(f.organization.value), term: f.term.value, accept: f.accept.value === "true",
  }],
};

document.addEventListener("submit", async (e) => {
  const form = e.target.closest("[data-form]");
  if (!form || !FORMS[form.dataset.form]) return;
  e.preventDefault();
  let request;
  try {
    request = FORMS[form.dataset.form](form);
  } catch (error) {
    flash(`JSON: ${error.message}`);  // a chain that does not parse: said at once, nothing sent
    return;
  }
  const data = await call(...request);
  if (data !== null) window.location.reload();
});

// Accounts: re-authorise in place. The new credentials go to the API once; nothing is shown back.
document.addEventListener("submit", async (e) => {
  const form = e.target.closest("[data-reauth]");
  if (!form) return;
  e.preventDefault();
  const credentials = {};
  for (const input of form.querySelectorAll("input[type=password]")) if (input.value) credentials[input.name] = input.value;
  const check = form.querySelector("[name=check]").checked;
  const data = await call("POST", `/accounts/${form.dataset.reauth}/reauthorize?check=${check}`, credentials);
  form.reset();
  if (data !== null) window.location.reload();
});

// Review: approve / reject / override with a reason, bound to the version reviewed (409 if it changed meanwhile).
async function decide(form, decision) {
  const reason = form.querySelector("[name=reason]").value.trim();
  if (decision !== "approve" && !reason) {
    flash("reason?");
    form.querySelector("[name=reason]").focus();
    return;
  }
  const data = await call("POST", `/posts/${form.dataset.review}/${decision}`, { reason, content_hash: form.dataset.hash });
  if (data !== null) window.location.reload();
}

document.addEventListener("click", (e) => {
  const button = e.target.closest("[data-decide]");
  if (button) decide(button.closest("form"), button.dataset.decide);
});

// Keyboard: j/k move in a list, Enter opens; on a review page a approves, r rejects (asks for the reason first).
document.addEventListener("keydown", (e) => {
  if (e.ctrlKey || e.metaKey || e.altKey) return;
  const typing = e.target.closest("input, textarea, select");
  const form = document.querySelector("form[data-review]");
  if (typing) {
    if (form && e.key === "Enter" && typing.name === "reason") { e.preventDefault(); decide(form, "reject"); }
    return;
  }
  const rows = Array.from(document.querySelectorAll("[data-keyboard-list] [data-href]"));
  if (rows.length && (e.key === "j" || e.key === "k")) {
    let at = rows.findIndex((r) => r.classList.contains("selected"));
    at = e.key === "j" ? Math.min(rows.length - 1, at + 1) : Math.max(0, at - 1);
    rows.forEach((r) => r.classList.remove("selected"));
    rows[at].classList.add("selected");
    rows[at].focus();
    return;
  }
  if (rows.length && e.key === "Enter") {
    const selected = rows.find((r) => r.classList.contains("selected"));
    if (selected) window.location.assign(selected.dataset.href);
    return;
  }
  if (form && e.key === "a" && form.querySelector("[data-decide=approve]")) decide(form, "approve");
  if (form && e.key === "r") decide(form, "reject");
});

// Compose: count, preview by the adapters' renderers, screening before submitting, then create (and schedule).
function composeFields(form) {
  const checked = Array.from(form.querySelectorAll("[name=accounts]:checked"));
  const accounts = checked.map((c) => Number(c.value));
  const kinds = new Set(checked.map((c) => c.dataset.kind));
  // A platform's own text goes with the post only where the editor wrote one and the post goes to that platform.
  const variants = {};
  for (const box of form.querySelectorAll("[data-variant]")) {
    const kind = box.dataset.variant;
    const title = box.querySelector(`[name="variant-title-${kind}"]`).value.trim();
    const body = box.querySelector(`[name="variant-body-${kind}"]`).value.trim();
    if ((title || body) && (kinds.has(kind) || !checked.length)) {
      variants[kind] = {};
      if (title) variants[kind].title = title;
      if (body) variants[kind].body = body;
    }
  }
  return {
    title: form.title.value, body: form.body.value, summary: form.summary.value, accounts, variants,
  };
}

let previewTimer = null;
async function refreshPreview(form) {
  const response = await fetch("/ui/preview", {
    method: "POST", credentials: "same-origin",
    headers: { "Content-Type": "application/json", "X-CSRF-Token": csrf() },
    body: JSON.stringify(composeFields(form)),
  });
  if (response.ok) document.getElementById("preview").innerHTML = await response.text();
}

function escapeHtml(text) {
  return text.replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c]);
}

async function check(form) {
  const fields = composeFields(form);
  // Screened as the server screens a version: title, summary, body, then each platform's own title and text.
  const own = Object.keys(fields.variants).sort().flatMap((k) => [fields.variants[k].title, fields.variants[k].body]);
  const text = [fields.title, fields.summary, fields.body, ...own].filter(Boolean).join("\n");
  if (!text.trim()) return;
  const verdict = await call("POST", "/screen", { text });
  if (verdict === null) return;
  const box = document.getElementById("verdict");
  let html = "", at = 0;
  for (const h of [...verdict.hits].sort((a, b) => a.start - b.start)) {
    if (h.start < at) continue;
    html += escapeHtml(text.slice(at, h.start)) + `<mark class="c-${escapeHtml(h.category)}" title="${escapeHtml(h.category)}">${escapeHtml(text.slice(h.start, h.end))}</mark>`;
    at = h.end;
  }
  html += escapeHtml(text.slice(at));
  box.innerHTML = `<h2 data-testid="verdict">${escapeHtml(verdict.decision)}</h2><div class="body">${html}</div>`;
  box.hidden = false;
}

async function create(form) {
  const fields = composeFields(form);
  const file = form.cover.files[0];
  if (file) {
    const upload = new FormData();
    upload.append("file", file);
    const media = await call("POST", "/media", upload);
    if (media === null) return;
    fields.cover_url = media.cover_url;
  }
  if (form.at.value) fields.at = form.at.value.replace("T", " ");
  const post = await call("POST", "/posts", fields);
  if (post !== null) window.location.assign(`/ui/posts/${post.id}`);
}

document.addEventListener("DOMContentLoaded", () => {
  const form = document.getElementById("compose");
  if (!form) return;
  const counter = form.querySelector("[data-count]");
  form.addEventListener("input", () => {
    counter.textContent = String(form.body.value.length);
    clearTimeout(previewTimer);
    previewTimer = setTimeout(() => refreshPreview(form), 300);
  });
  form.querySelector("[data-check]").addEventListener("click", () => check(form));
  for (const button of form.querySelectorAll("[data-pick]")) {
    button.addEventListener("click", () => {
      const kind = button.dataset.pick;  // "" clears the choice
      for (const c of form.querySelectorAll("[name=accounts]")) c.checked = kind !== "" && (c.checked || c.dataset.kind === kind);
      refreshPreview(form);
    });
  }
  form.querySelector("[data-create]").addEventListener("click", () => create(form));
  refreshPreview(form);
});

// The audit page: check the hash chain (GET /audit/verify) and say where it breaks, if it does.
document.addEventListener("click", async (e) => {
  if (!e.target.closest("[data-verify]")) return;
  const result = await call("GET", "/audit/verify");
  if (result === null) return;
  const out = document.getElementById("verify-result");
  out.textContent = result.ok ? `✓ ${result.rows}` : `✗ #${result.first_bad_id}: ${result.problem}`;
});
