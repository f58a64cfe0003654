// Shared helpers of the console pages. Data reaches the DOM only as text nodes (h() below),
// never as markup, so names, tags and addresses from outside cannot become HTML or script.

const meta = (name) => document.querySelector(`meta[name="${name}"]`)?.content ?? "";
export const session = { csrf: meta("fa-csrf"), tenant: meta("fa-tenant"), role: meta("fa-role") };

// h("a", {href: "/x", class: "c"}, "text", child...): an element; strings become text nodes.
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else el.setAttribute(k, v === true ? "" : String(v));
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

export class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

// The page's URL state: every parameter a page uses lives in location.search (shareable links).
export const params = () => new URLSearchParams(location.search);

export function withParams(path, values) {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(values)) {
    if (Array.isArray(v)) v.forEach((x) => q.append(k, x));
    else if (v !== null && v !== undefined && v !== "") q.set(k, v);
  }
  const s = q.toString();
  return s ? `${path}?${s}` : path;
}

// A link to a console page that keeps the analyst's purpose (a shared link carries it too).
export function href(path, values = {}) {
  const purpose = params().get("purpose");
  return withParams(path, { ...values, ...(purpose ? { purpose } : {}) });
}

// Navigate within the console: the new state goes into the URL, then the page redraws.
export function go(path, values) {
  const url = withParams(path, values);
  if (path.split("/")[1] !== location.pathname.split("/")[1]) return location.assign(url);
  history.pushState(null, "", url);
  window.dispatchEvent(new Event("fa:navigate"));
}

// A /v1 call with the session cookie; POSTs carry the session's CSRF token. The purpose (for
// analysts) comes from the URL, so a shared link carries its case reference.
export async function api(path, values = {}, { method = "GET", body = null, signal } = {}) {
  const purpose = params().get("purpose");
  const url = withParams(path, { ...values, ...(purpose ? { purpose } : {}) });
  const headers = { Accept: "application/json" };
  if (method !== "GET") {
    headers["X-CSRF-Token"] = session.csrf;
    headers["Content-Type"] = "application/json";
  }
  const res = await fetch(url, {
    method, headers, credentials: "same-origin", signal,
    body: body === null ? null : JSON.stringify(body),
  });
  if (res.status === 401) {
    location.assign(withParams("/signin", { next: location.pathname + location.search }));
    throw new ApiError(401, "unauthenticated", "signed out");
  }
  const doc = await res.json().catch(() => ({}));
  if (!res.ok) {
    const e = doc.error || {};
    throw new ApiError(res.status, e.code || `http_${res.status}`, e.message || res.statusText);
  }
  return doc;
}

export function errorBox(err) {
  return h("p", { class: "error", role: "alert" },
    h("strong", {}, err.code || "error"), ": ", err.message || String(err));
}

export const fmt = (n) => (typeof n === "number" ? n.toLocaleString("en-US") : n ?? "");

const ADDRESS_COLUMNS = new Set(["ip", "peer", "src_addr", "dst_addr", "address", "a", "b",
  "c2", "src", "dst", "node", "source", "target", "relay", "origin", "exporter"]);
const PORT_COLUMNS = new Set(["src_port", "dst_port", "port", "local_port", "peer_port"]);

// An address cell: a link to its page, visibly marked when it is a pseudonym.
export function address(value, pseudonymised = false) {
  if (value === null || value === undefined || value === "") return "";
  const link = h("a", { href: href(`/ip/${encodeURIComponent(value).replace(/%2F/g, "/")}`),
    class: pseudonymised ? "addr pseudonym" : "addr",
    title: pseudonymised ? "pseudonym (not the real address)" : null }, value);
  return pseudonymised ? h("span", {}, link, h("span", { class: "mark" }, "pseudonym")) : link;
}

export function port(value) {
  return h("a", { href: href("/explore", { filter: `port ${value}` }), class: "port" },
    value);
}

export function cell(column, row) {
  const v = row[column];
  if (ADDRESS_COLUMNS.has(column) && typeof v === "string") {
    return address(v, row[`${column}_pseudonymised`] === true);
  }
  if (PORT_COLUMNS.has(column) && typeof v === "number") return port(v);
  if (Array.isArray(v)) return v.join(", ");
  if (v !== null && typeof v === "object") return JSON.stringify(v);
  return fmt(v);
}

// A table of API rows; *_pseudonymised columns become marks on their address cells.
export function table(rows, columns = null, caption = null) {
  if (!rows || rows.length === 0) return h("p", { class: "muted" }, "no rows");
  const cols = columns || Object.keys(rows[0]).filter((c) => !c.endsWith("_pseudonymised"));
  return h("table", {},
    caption ? h("caption", {}, caption) : null,
    h("thead", {}, h("tr", {}, cols.map((c) => h("th", {}, c)))),
    h("tbody", {}, rows.map((r) => h("tr", {}, cols.map((c) =>
      h("td", { class: typeof r[c] === "number" ? "num" : null }, cell(c, r)))))));
}

export function section(title, ...children) {
  return h("section", {}, h("h2", {}, title), ...children);
}

// The time-window form shared by the pages: since/until in the URL.
export function windowForm(path, extra = {}) {
  const p = params();
  const since = h("input", { name: "since", value: p.get("since") || "", placeholder: "7d" });
  const until = h("input", { name: "until", value: p.get("until") || "", placeholder: "now" });
  return h("form", { class: "window", onsubmit: (ev) => {
    ev.preventDefault();
    go(path, { ...Object.fromEntries(p), ...extra, since: since.value, until: until.value });
  } }, h("label", {}, "since ", since), h("label", {}, "until ", until), h("button", {}, "Apply"));
}
