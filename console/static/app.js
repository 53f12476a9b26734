// cmbs console: reads the OCCI interface of the server that serves it.
"use strict";

const OCCI_JSON = "application/occi+json";
const main = document.getElementById("main");
let events = null; // the EventSource while the events page is open

function el(tag, attrs, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === "class") e.className = v; else e.setAttribute(k, v);
  }
  for (const c of children) e.append(c instanceof Node ? c : document.createTextNode(String(c)));
  return e;
}

async function getJSON(path) { return request("GET", path); }

// request calls the API with the browser's credentials for this server (the
// same authentication as any client); a failure throws the server's message.
async function request(method, path, body) {
  const opts = { method, headers: { Accept: OCCI_JSON }, credentials: "same-origin" };
  if (body !== undefined) { opts.headers["Content-Type"] = OCCI_JSON; opts.body = JSON.stringify(body); }
  const resp = await fetch(path, opts);
  const text = await resp.text();
  const body2 = text;
  let data = null;
  try { data = body2 ? JSON.parse(body2) : null; } catch (e) { /* not JSON */ }
  if (!resp.ok) {
    const msg = data && data.error ? data.error.message : body2;
    throw new Error(resp.status + " " + msg);
  }
  return data;
}

// confirmThen shows an in-page confirmation of what is about to be done;
// only "Confirm" runs it (the API call), and its outcome, or the server's
// error message, is shown in #action-result.
function confirmThen(what, run) {
  const old = document.getElementById("confirm");
  if (old) old.remove();
  const result = document.getElementById("action-result") || el("div", { id: "action-result" });
  const ok = el("button", { id: "confirm-ok", type: "button" }, "Confirm");
  const cancel = el("button", { id: "confirm-cancel", type: "button" }, "Cancel");
  const box = el("div", { id: "confirm", role: "dialog", "aria-modal": "true" }, el("p", {}, what), ok, " ", cancel);
  main.prepend(box);
  if (!result.parentNode) box.after(result);
  cancel.onclick = () => { box.remove(); result.replaceChildren(el("p", { class: "muted", id: "action-cancelled" }, "cancelled: " + what)); };
  ok.onclick = async () => {
    ok.disabled = cancel.disabled = true;
    result.replaceChildren(el("p", { class: "muted" }, "running…"));
    try {
      const out = await run();
      box.remove();
      result.replaceChildren(el("p", { id: "action-done" }, "done: " + what), el("pre", { class: "mono" }, JSON.stringify(out, null, 2) || ""));
    } catch (e) {
      box.remove();
      result.replaceChildren(el("p", { class: "error", id: "action-error" }, what + " failed: " + e.message));
    }
  };
  ok.focus();
}

// The model, read once per page view for the actions an entity offers.
async function actionsOf(entity) {
  const d = await getJSON("/-/");
  const byId = new Map([...(d.kinds || []), ...(d.mixins || [])].map(c => [categoryId(c), c]));
  const ids = [entity.kind, ...(entity.mixins || [])].flatMap(id => (byId.get(id) || {}).actions || []);
  return [...new Set(ids)].map(id => id.slice(id.indexOf("#") + 1));
}

// A location (absolute URL on this server, or a path) as an in-console link.
function pathOf(v) {
  if (typeof v !== "string") return null;
  if (v.startsWith(location.origin + "/")) return v.slice(location.origin.length);
  if (v.startsWith("/") && !v.startsWith("//")) return v;
  return null;
}
function browseLink(v, text) {
  const p = pathOf(v);
  return p ? el("a", { href: "#/browse" + p }, text || p) : document.createTextNode(text || String(v));
}

// Nested pyOCNI attributes as dotted name → value.
function flatten(obj, prefix, out) {
  out = out || {};
  for (const [k, v] of Object.entries(obj || {})) {
    const name = prefix ? prefix + "." + k : k;
    if (v && typeof v === "object" && !Array.isArray(v) && Object.keys(v).length) flatten(v, name, out);
    else out[name] = v;
  }
  return out;
}

function valueCell(v) {
  if (Array.isArray(v)) {
    const td = el("td");
    v.forEach((x, i) => { if (i) td.append(", "); td.append(typeof x === "string" ? browseLink(x, x) : JSON.stringify(x)); });
    return td;
  }
  if (typeof v === "string") return el("td", { class: "mono" }, browseLink(v, v));
  return el("td", { class: "mono" }, JSON.stringify(v));
}

function categoryId(c) { return (c.scheme || "") + (c.term || ""); }

async function showModel() {
  const d = await getJSON("/-/");
  main.replaceChildren(el("h2", {}, "Model"));
  const sections = [["Kinds", d.kinds || []], ["Mixins", d.mixins || []], ["Actions", d.actions || []]];
  for (const [title, list] of sections) {
    const table = el("table", { id: "model-" + title.toLowerCase() },
      el("tr", {}, el("th", {}, "term"), el("th", {}, "scheme"), el("th", {}, "title"), el("th", {}, "location"),
        el("th", {}, "attributes"), el("th", {}, "actions")));
    for (const c of list) {
      const attrs = Object.keys(flatten(c.attributes || {})).map(a => a.replace(/\.(type|mutable|required|description|default|pattern)$/, ""));
      table.append(el("tr", { "data-category": categoryId(c) },
        el("td", {}, c.term), el("td", { class: "mono" }, c.scheme || ""), el("td", {}, c.title || ""),
        el("td", {}, c.location ? browseLink(c.location, c.location) : ""),
        el("td", { class: "mono" }, [...new Set(attrs)].join(" ")),
        el("td", { class: "mono" }, (c.actions || []).join(" "))));
    }
    main.append(el("h2", {}, title + " (" + list.length + ")"), table);
  }
}

async function showBrowse(path) {
  path = path || "/";
  main.replaceChildren(el("h2", {}, path));
  if (path === "/") {
    const d = await getJSON("/-/");
    const ul = el("ul");
    for (const c of [...(d.kinds || []), ...(d.mixins || [])]) {
      if (c.location) ul.append(el("li", {}, browseLink(c.location, c.location), " ", el("span", { class: "muted" }, categoryId(c))));
    }
    main.append(el("p", {}, "Collections:"), ul);
    return;
  }
  const d = await getJSON(path);
  if (d && Array.isArray(d["X-OCCI-Location"])) {
    const ul = el("ul", { id: "collection" });
    for (const loc of d["X-OCCI-Location"]) ul.append(el("li", {}, browseLink(loc)));
    main.append(el("p", {}, d["X-OCCI-Location"].length + " entities"), ul);
    return;
  }
  const table = el("table", { id: "entity" });
  for (const k of ["id", "kind", "title", "summary", "location"]) {
    if (d[k] !== undefined) table.append(el("tr", {}, el("th", {}, k), valueCell(d[k])));
  }
  if (d.mixins && d.mixins.length) table.append(el("tr", {}, el("th", {}, "mixins"), valueCell(d.mixins)));
  for (const [k, v] of Object.entries(flatten(d.attributes || {}))) table.append(el("tr", {}, el("th", { class: "mono" }, k), valueCell(v)));
  main.append(table);
  const links = d.links || [];
  if (links.length) {
    const ul = el("ul", { id: "links" });
    for (const l of links) {
      if (typeof l === "string") { ul.append(el("li", {}, browseLink(l))); continue; }
      const target = l.target || (l.attributes && l.attributes.occi && l.attributes.occi.core && l.attributes.occi.core.target);
      ul.append(el("li", {}, l.location || l.id ? browseLink(l.location || l.id) : "", " → ", target ? browseLink(target) : "", " ", el("span", { class: "muted" }, l.kind || "")));
    }
    main.append(el("h2", {}, "Links"), ul);
  }
  const terms = await actionsOf(d).catch(() => []);
  if (terms.length) {
    const p = el("p", { id: "actions" });
    for (const term of terms) {
      const b = el("button", { type: "button", class: "action", "data-action": term }, term);
      b.onclick = () => confirmThen("run " + term + " on " + path, () => request("POST", path + "?action=" + encodeURIComponent(term), {}));
      p.append(b, " ");
    }
    main.append(el("h2", {}, "Actions"), p, el("div", { id: "action-result" }));
  }
}

async function showMembers() {
  main.replaceChildren(el("h2", {}, "Members"));
  const [status, coll] = await Promise.all([getJSON("/-/status").catch(() => ({ layers: [] })), getJSON("/cmbs/member/").catch(() => ({ "X-OCCI-Location": [] }))]);
  const locs = (coll["X-OCCI-Location"] || []).slice(0, 200);
  const members = (await Promise.all(locs.map(l => getJSON(pathOf(l) || l).catch(() => null)))).filter(Boolean).map((m, i) => {
    const a = flatten(m.attributes || {});
    const get = n => a["cmbs.member." + n];
    return {
      path: pathOf(locs[i]) || locs[i], id: get("id") || m.id, local: String(get("local")).toLowerCase() === "true",
      l1: get("l1_socket") || "", neighbors: String(get("neighbors_socket") || "").split(/[\s,]+/).filter(Boolean),
      layers: (status.layers || []).filter(l => pathOf(l.member) === (pathOf(locs[i]) || locs[i]) || l.member === m.id).map(l => l.layer),
    };
  });
  const w = 640, h = 420, r = Math.min(w, h) / 2 - 70;
  const svg = document.createElementNS("http://www.w3.org/2000/svg", "svg");
  svg.setAttribute("id", "member-graph");
  svg.setAttribute("width", w); svg.setAttribute("height", h);
  const pos = members.map((m, i) => {
    const t = 2 * Math.PI * i / Math.max(members.length, 1) - Math.PI / 2;
    return members.length === 1 ? [w / 2, h / 2] : [w / 2 + r * Math.cos(t), h / 2 + r * Math.sin(t)];
  });
  const svgEl = (tag, attrs) => { const e = document.createElementNS(svg.namespaceURI, tag); for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v); return e; };
  members.forEach((m, i) => m.neighbors.forEach(n => {
    const j = members.findIndex(o => o.l1 === n);
    if (j >= 0 && j !== i) svg.append(svgEl("line", { x1: pos[i][0], y1: pos[i][1], x2: pos[j][0], y2: pos[j][1], "data-from": m.id, "data-to": members[j].id }));
  }));
  members.forEach((m, i) => {
    const g = svgEl("g", { class: "node " + (m.local ? "local" : "remote"), "data-member": m.id });
    const a = svgEl("a", { href: "#/browse" + m.path });
    a.append(svgEl("circle", { cx: pos[i][0], cy: pos[i][1], r: 14 }));
    const label = svgEl("text", { x: pos[i][0] + 18, y: pos[i][1] - 2 });
    label.textContent = m.id + (m.local ? " (local)" : "");
    const sub = svgEl("text", { x: pos[i][0] + 18, y: pos[i][1] + 12, class: "muted" });
    sub.textContent = m.l1 + (m.layers.length ? " · " + m.layers.join(" ") : "");
    a.append(label, sub);
    g.append(a);
    svg.append(g);
  });
  main.append(el("p", {}, members.length + " members known here; blue: hosted here, grey: remote; lines: neighbours"), svg);
  const table = el("table", {}, el("tr", {}, el("th", {}, "layer"), el("th", {}, "member"), el("th", {}, "socket")));
  for (const l of status.layers || []) table.append(el("tr", {}, el("td", {}, l.layer), el("td", {}, browseLink(l.member, l.member)), el("td", { class: "mono" }, l.socket)));
  main.append(el("h2", {}, "Layers running here"), table);
  main.append(sendForm(members.filter(m => m.local), members.filter(m => !m.local && m.l1)));
}

// sendForm creates a message and sends it on L1 or L2 from a local member,
// after a confirmation (other layers need more attributes: create those
// messages through the API, then use their page's send_* actions).
function sendForm(locals, remotes) {
  const id = el("input", { id: "send-id", required: "", placeholder: "message id", pattern: "[A-Za-z0-9._~-]+" });
  const layer = el("select", { id: "send-layer" }, el("option", { value: "l2" }, "L2: every member"), el("option", { value: "l1" }, "L1: one neighbour"));
  const from = el("select", { id: "send-from" }, ...locals.map(m => el("option", { value: m.id }, m.id)));
  const to = el("select", { id: "send-to" }, ...remotes.map(m => el("option", { value: m.l1 }, m.id)));
  const text = el("input", { id: "send-text", placeholder: "text" });
  const form = el("form", { id: "send" }, el("label", {}, "id ", id), " ", el("label", {}, "layer ", layer), " ",
    el("label", {}, "from ", from), " ", el("label", {}, "L1 to ", to), " ", el("label", {}, "text ", text), " ",
    el("button", { type: "submit", id: "send-submit" }, "Send…"));
  form.onsubmit = ev => {
    ev.preventDefault();
    const l = layer.value, mid = id.value.trim();
    if (!mid) return;
    const m = { cmbs_layer: l, sendable: "true", storable: "true", executable: "false", message_content: { text: text.value } };
    if (l === "l1") m.l1_socket_receiver_member = to.value;
    const msg = { resources: [{ kind: "http://houssem.org/cmbs#message", mixins: ["http://houssem.org/cmbs#" + l], id: mid, attributes: { cmbs: { message: m } } }] };
    const attrs = from.value ? { attributes: { member: from.value } } : {};
    confirmThen("create message " + mid + " and send it on " + l.toUpperCase() + (from.value ? " from " + from.value : ""), async () => {
      await request("POST", "/cmbs/message/", msg);
      return request("POST", "/cmbs/message/" + encodeURIComponent(mid) + "?action=send_" + l, attrs);
    });
  };
  return el("div", {}, el("h2", {}, "Send a message"), locals.length ? form : el("p", { class: "muted" }, "no member is hosted here"));
}

function showEvents() {
  const table = el("table", { id: "events" }, el("tr", {}, el("th", {}, "time"), el("th", {}, "event"), el("th", {}, "document / message"), el("th", {}, "detail")));
  const state = el("p", { id: "events-state" }, "connecting…");
  main.replaceChildren(el("h2", {}, "Live events"), el("p", { class: "muted" }, "Store changes (any server sharing this store) and messages delivered to the members hosted here."), state, table);
  const add = row => {
    table.firstChild.after(row);
    while (table.rows.length > 500) table.deleteRow(-1);
  };
  events = new EventSource("/console/events");
  events.onopen = () => { state.textContent = "connected: events appear as they happen"; document.body.dataset.events = "open"; };
  events.onerror = () => { state.textContent = "disconnected; retrying…"; document.body.dataset.events = "closed"; };
  events.addEventListener("change", ev => {
    const c = JSON.parse(ev.data);
    add(el("tr", { class: "change" + (c.deleted ? " deleted" : ""), "data-id": c.id },
      el("td", {}, new Date().toLocaleTimeString()), el("td", {}, c.deleted ? "deleted" : "change"),
      el("td", { class: "mono" }, c.deleted ? c.id : browseLink(c.id, c.id)),
      el("td", { class: "mono" }, c.rev || "")));
  });
  events.addEventListener("delivery", ev => {
    const d = JSON.parse(ev.data);
    const detail = "to " + d.member + (d.duplicate ? " (duplicate)" : "") + ((d.errors || []).length ? " · errors: " + d.errors.join("; ") : "");
    add(el("tr", { class: "delivery" + ((d.errors || []).length ? " failed" : ""), "data-message": d.message || "", "data-layer": d.layer },
      el("td", {}, new Date().toLocaleTimeString()), el("td", {}, "delivery " + d.layer),
      el("td", { class: "mono" }, d.stored ? browseLink(d.stored, d.message || d.stored) : (d.message || "")),
      el("td", { class: "mono" }, detail)));
  });
}

async function route() {
  if (events) { events.close(); events = null; delete document.body.dataset.events; }
  const h = location.hash || "#/model";
  document.querySelectorAll("header nav a").forEach(a => a.classList.toggle("active", h.startsWith(a.getAttribute("href").replace(/\/$/, ""))));
  document.body.dataset.page = "loading";
  try {
    if (h.startsWith("#/browse")) await showBrowse(decodeURI(h.slice("#/browse".length)));
    else if (h.startsWith("#/members")) await showMembers();
    else if (h.startsWith("#/events")) showEvents();
    else await showModel();
  } catch (e) {
    main.replaceChildren(el("p", { class: "error" }, e.message));
  }
  document.body.dataset.page = h.split("/")[1] || "model";
}

window.addEventListener("hashchange", route);
getJSON("/-/status").then(s => { document.getElementById("server").textContent = "cmbs " + s.version + " · " + s.store.store; }).catch(() => {});
route();
