/**
 * The console's stylesheet and its one small script, served from the control plane
 * itself (`/console/app.css`, `/console/app.js`) so the strict CSP (console/layout.ts)
 * allows no inline code and nothing from anywhere else. The script only enhances:
 * every page works as plain forms and links without it.
 *
 * The script builds every node with `textContent` (never `innerHTML`): live audit
 * events carry attacker-chosen hosts and paths.
 */
export const CSS = `*{box-sizing:border-box}body{font:14px/1.45 system-ui,sans-serif;margin:0;color:#1b2230;background:#f7f8fa}
header{display:flex;gap:1rem;align-items:center;background:#1b2230;color:#fff;padding:.5rem 1rem}
header a{color:#cfe0ff;text-decoration:none}header b{margin-right:1rem}header form{margin-left:auto}
main{max-width:1100px;margin:0 auto;padding:1rem 1.5rem}h1{font-size:1.35rem}h2{font-size:1.1rem;margin-top:1.6rem}
table{border-collapse:collapse;width:100%;background:#fff}td,th{border-bottom:1px solid #e4e6ea;padding:4px 8px;text-align:left;vertical-align:top}
th{background:#eef0f4;font-weight:600}code,.mono{font:12.5px ui-monospace,monospace;word-break:break-all}
.badge{display:inline-block;padding:1px 7px;border-radius:9px;font-size:12px;background:#e5e7eb}
.active,.verified,.allow{background:#d9f5df;color:#14532d}.suspended,.failed,.refuse,.revoked,.expired{background:#fde2e2;color:#7f1d1d}.pending{background:#fff2cc;color:#713f12}
form.inline{display:inline}input,select,button{font:inherit;padding:3px 6px}button{cursor:pointer}
.card{background:#fff;border:1px solid #e4e6ea;border-radius:6px;padding:.8rem 1rem;margin:.6rem 0}
.error{background:#fde2e2;border-color:#f5a5a5}.secret{background:#fff8d6;border-color:#e6c200}
.row{display:flex;gap:1rem;flex-wrap:wrap}.row>*{flex:1 1 300px}nav.sub a{margin-right:1rem}
.muted{color:#6b7280}svg text{font:11px system-ui,sans-serif}`;

export const JS = `"use strict";
(function () {
  for (const b of document.querySelectorAll("[data-copy]")) {
    b.addEventListener("click", function () {
      const text = b.getAttribute("data-copy") || "";
      const done = function () { b.textContent = "copied"; };
      if (navigator.clipboard) navigator.clipboard.writeText(text).then(done, function () {});
    });
  }
  for (const f of document.querySelectorAll("form[data-confirm]")) {
    f.addEventListener("submit", function (e) {
      if (!window.confirm(f.getAttribute("data-confirm") || "Are you sure?")) e.preventDefault();
    });
  }
  const live = document.getElementById("live");
  if (live) {
    const body = live.querySelector("tbody");
    const state = document.getElementById("live-state");
    const source = new EventSource("/console/live/events" + window.location.search);
    source.addEventListener("open", function () { state.textContent = "connected"; });
    source.addEventListener("error", function () { state.textContent = "reconnecting"; });
    source.addEventListener("decision", function (message) {
      const e = JSON.parse(message.data);
      const tr = document.createElement("tr");
      tr.className = "event";
      const cells = [e.time, e.decision, e.reason, e.tenantId || "-", e.method + " " + e.host + e.path, e.status, e.clientIp, e.requestId];
      cells.forEach(function (value, i) {
        const td = document.createElement("td");
        if (i === 1) { const s = document.createElement("span"); s.className = "badge " + (e.decision === "allow" ? "allow" : "refuse"); s.textContent = value; td.appendChild(s); }
        else td.textContent = String(value);
        tr.appendChild(td);
      });
      body.insertBefore(tr, body.firstChild);
      while (body.children.length > 200) body.removeChild(body.lastChild);
    });
  }
})();
`;
