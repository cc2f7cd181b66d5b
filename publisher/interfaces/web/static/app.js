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
  const accounts = Array.from(form.querySelectorAll("[name=accounts]:checked")).map((c) => Number(c.value));
  return {
    title: form.title.value, body: form.body.value, summary: form.summary.value, accounts,
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
  const text = [fields.title, fields.summary, fields.body].filter(Boolean).join("\n");
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
