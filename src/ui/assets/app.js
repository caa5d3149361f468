// The review page: the list of what waits, one Decision in full, and the answer form.
// The server watches the Decisions and sends a "changed" event; the page then fetches
// again. Every value from the cluster is written as text, never as markup.
"use strict";

(() => {
  const $ = (selector) => document.querySelector(selector);
  let selected = null; // { namespace, name } from the address's #/namespace/name
  let shown = null; // the Decision on screen, as the server shaped it
  let auditOf = null; // the resourceVersion the audit trail was read at
  let pending = null; // the timer that gathers a burst of changes into one fetch

  // An element with attributes and children (strings become text).
  function el(tag, attributes, ...children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(attributes || {})) {
      if (value !== null && value !== undefined && value !== false) node.setAttribute(key, value);
    }
    for (const child of children.flat(Infinity)) {
      if (child === null || child === undefined || child === false) continue;
      node.append(typeof child === "string" || typeof child === "number" ? String(child) : child);
    }
    return node;
  }

  // A definition list of the pairs whose value is present.
  function pairs(rows) {
    return el("dl", {}, rows.filter(([, value]) => value !== null && value !== undefined && value !== "")
      .map(([term, value]) => [el("dt", {}, term), el("dd", {}, value)]));
  }

  function section(id, title, ...content) {
    return el("section", { "aria-labelledby": id }, el("h3", { id }, title), ...content);
  }

  async function fetchJSON(url, options) {
    const response = await fetch(url, Object.assign({ headers: { Accept: "application/json" } }, options));
    const text = await response.text();
    let body;
    try {
      body = JSON.parse(text);
    } catch (_) {
      body = { message: text.trim() || response.statusText };
    }
    return { ok: response.ok, status: response.status, body };
  }

  function left(until) {
    const seconds = Math.floor((Date.parse(until) - Date.now()) / 1000);
    if (seconds <= 0) return "expires now";
    const d = Math.floor(seconds / 86400);
    const h = Math.floor((seconds % 86400) / 3600);
    const m = Math.floor((seconds % 3600) / 60);
    const s = seconds % 60;
    const parts = d > 0 ? [`${d}d`, `${h}h`, `${m}m`] : h > 0 ? [`${h}h`, `${m}m`, `${s}s`] : [`${m}m`, `${s}s`];
    return `expires in ${parts.join(" ")}`;
  }

  // The list.
  async function refreshList() {
    const { ok, body } = await fetchJSON("/api/decisions");
    const watch = $("#watch");
    if (!ok) {
      watch.textContent = body.message;
      watch.className = "problem";
      return;
    }
    $("#who").textContent = [body.me ? `Signed in as ${body.me}` : null, body.scope].filter(Boolean).join(" · ");
    watch.className = body.problem ? "problem" : "quiet";
    watch.textContent = body.problem
      || (!body.ready ? "Loading…"
        : body.items.length === 0 ? "Nothing waits for an answer."
          : `${body.items.length} waiting, soonest to expire first.`);
    const list = $("#decisions");
    // Redrawn on every change: keep the keyboard where it was.
    const focused = list.contains(document.activeElement) ? document.activeElement.getAttribute("href") : null;
    list.replaceChildren(...body.items.map((d) => {
      const current = selected && selected.namespace === d.namespace && selected.name === d.name;
      return el("li", {},
        el("a", { href: `#/${encodeURIComponent(d.namespace)}/${encodeURIComponent(d.name)}`, "aria-current": current ? "page" : null },
          el("span", { class: "name" }, d.name),
          el("span", { class: "quiet" }, ` in ${d.namespace}`),
          el("p", {}, d.description),
          el("p", { class: "quiet" }, [d.criticality, d.risk ? `risk ${d.risk}` : null, d.progress ? `approvals ${d.progress}` : null, d.expiresAt ? left(d.expiresAt) : d.phase].filter(Boolean).join(" · ")),
          d.steps.length ? el("p", { class: "steps" }, `Plan: ${d.steps.join(" → ")}`) : null,
          d.approvedByMe ? el("p", { class: "badge phase-Approved" }, "you approved") : null));
    }));
    if (focused) {
      const again = [...list.querySelectorAll("a")].find((a) => a.getAttribute("href") === focused);
      if (again) again.focus();
    }
  }

  // One Decision.
  async function refreshDetail() {
    if (!selected) return;
    const { namespace, name } = selected;
    const { ok, body } = await fetchJSON(`/api/decisions/${encodeURIComponent(namespace)}/${encodeURIComponent(name)}`);
    if (!selected || selected.namespace !== namespace || selected.name !== name) return;
    if (!ok) {
      shown = null;
      $("#detail-body").replaceChildren(el("h2", { id: "detail-title" }, `${namespace}/${name}`), el("p", { class: "problem" }, body.message));
      $("#answer").hidden = true;
      $("#audit-section").hidden = true;
      return;
    }
    shown = body;
    renderDetail(body);
    if (body.resourceVersion !== auditOf) {
      auditOf = body.resourceVersion;
      refreshAudit(namespace, name);
    }
  }

  function renderDetail(d) {
    const r = d.request;
    const parts = [
      el("h2", { id: "detail-title" }, d.name, el("span", { class: "quiet" }, ` in ${d.namespace}`)),
      el("p", {}, el("span", { class: `badge phase-${d.phase}` }, d.phase), ` · asked ${d.age} ago`,
        d.expiresAt && d.waiting ? [" · ", el("span", { id: "expiry" }, left(d.expiresAt))] : null),
      section("s-request", "Request", pairs([
        ["Digest", d.digest ? el("code", { id: "digest", title: "this Decision: its uid, its request and its pinned plan; an approval confirms it" }, d.digest) : null],
        ["Action", r.actionType],
        ["Description", r.description],
        ["Criticality", r.criticality],
        ["Priority", r.priority],
        ["Duration", r.estimatedDurationMinutes ? `${r.estimatedDurationMinutes} minutes (estimated)` : null],
        ["Source", r.source],
        ["Requested by", r.requestedBy || "unknown"],
        ["On behalf of", r.onBehalfOf],
      ]), r.context.length ? [el("h4", {}, "Context"), pairs(r.context)] : null),
    ];
    if (d.risk) {
      parts.push(section("s-risk", `Risk: ${d.risk.level} (score ${d.risk.score})`,
        el("ul", { class: "reasons" }, d.risk.reasons.map((reason) => el("li", {}, reason)))));
    }
    if (d.evaluation) {
      const e = d.evaluation;
      parts.push(section("s-policy", "Policy", pairs([
        ["Outcome", e.outcome],
        ["Decided by", e.decidedBy],
        ["Why", e.message],
        ["Needs", e.requiredApprovals ? `${e.requiredApprovals} approval(s)` : null],
        ["From", e.approvers || (e.requiredApprovals ? "any approver of the namespace" : null)],
        ["Approval holds", d.approvalHolds],
        ["Not before", d.notBefore],
      ])));
    }
    const a = d.approvals;
    parts.push(section("s-approvals", `Approvals${a.progress ? ` ${a.progress}` : ""}`,
      a.given.length
        ? el("ul", { id: "approvals", class: "reasons" }, a.given.map((g) => el("li", {},
          `${g.approver} at `, el("time", { datetime: g.at }, new Date(g.at).toLocaleString()),
          g.reason ? `: ${g.reason}` : "",
          g.lapsedAt ? " (lapsed; approve again)" : "")))
        : el("p", { class: "quiet" }, "No approvals yet."),
      a.still ? el("p", {}, `Still needed: ${a.still}.`) : null,
      a.rejection ? el("p", { class: "problem" }, a.rejection) : null,
      a.ignored.map((i) => el("p", { class: "quiet" }, `Not counted: ${i}`)),
      a.notMine ? el("p", { class: "warning" }, `Your approval would not count: ${a.notMine}.`) : null));
    if (d.plan) {
      const p = d.plan;
      parts.push(section("s-plan", `Plan ${p.name}`,
        pairs([
          ["Mode", p.mode],
          ["For", p.actionTypes.join(", ")],
          ["At least", p.floor],
          ["Plan digest", el("code", { id: "plan-digest" }, p.digest)],
          ["Pinned", new Date(p.pinnedAt).toLocaleString()],
          ["Dry run", el("span", { id: "dry-run" }, p.check.verdict, p.check.message ? `: ${p.check.message}` : "",
            p.check.checkedAt ? ` (checked ${new Date(p.check.checkedAt).toLocaleString()})` : "")],
        ]),
        p.warning ? el("p", { class: "warning", role: "alert" }, p.warning) : null,
        el("ol", { id: "plan-steps" }, p.steps.map((s) => el("li", {},
          el("h4", {}, s.name, s.rollback ? el("span", { class: "quiet" }, " (can be rolled back)") : null),
          pairs([
            ["Image", s.images.join(", ")],
            ["Runs", s.command ? el("code", {}, s.command) : null],
            ["As", `${s.runsAs} in ${s.namespace}`],
          ]))))));
    } else if (d.planNote) {
      parts.push(section("s-plan", "Plan", el("p", { class: "warning" }, d.planNote)));
    }
    if (d.execution) {
      const x = d.execution;
      parts.push(section("s-execution", `Execution: ${x.mode}`,
        x.modeReason ? el("p", { class: "quiet" }, x.modeReason) : null,
        el("ul", { class: "reasons" }, x.steps.map((s) => el("li", {}, s))),
        x.rollback ? el("p", {}, x.rollback) : null));
    }
    $("#detail-body").replaceChildren(...parts);
    $("#audit-section").hidden = false;
    $("#answer").hidden = !d.waiting;
    $("#confirms").textContent = d.plan
      ? `Approving confirms exactly the plan content reviewed here: ${d.plan.shortDigest}.`
      : "";
    document.title = `${d.name} · decision-gate review`;
  }

  async function refreshAudit(namespace, name) {
    $("#audit-note").textContent = "Reading the audit trail…";
    const { ok, body } = await fetchJSON(`/api/decisions/${encodeURIComponent(namespace)}/${encodeURIComponent(name)}/audit`);
    if (!selected || selected.namespace !== namespace || selected.name !== name) return;
    const note = $("#audit-note");
    const entries = ok ? body.entries : [];
    note.className = ok && !body.unavailable ? "quiet" : "problem";
    note.textContent = !ok ? body.message
      : body.unavailable || (entries.length ? "" : "Nothing recorded yet.");
    $("#audit").replaceChildren(...entries.map((e) => el("li", {},
      el("time", { datetime: e.at }, new Date(e.at).toLocaleString()), " ",
      el("strong", {}, e.event), ` by ${e.actor}`, e.message ? `: ${e.message}` : "")));
  }

  function route() {
    const match = /^#\/([^/]+)\/([^/]+)$/.exec(location.hash);
    const next = match ? { namespace: decodeURIComponent(match[1]), name: decodeURIComponent(match[2]) } : null;
    const same = next && selected && next.namespace === selected.namespace && next.name === selected.name;
    if (same) return;
    selected = next;
    shown = null;
    auditOf = null;
    $("#outcome").textContent = "";
    $("#outcome").className = "";
    $("#reason").value = "";
    $("#audit").replaceChildren();
    if (!selected) {
      $("#detail-body").replaceChildren(el("h2", { id: "detail-title" }, "No Decision chosen"),
        el("p", { class: "quiet" }, "Choose a Decision from the list to review it."));
      $("#answer").hidden = true;
      $("#audit-section").hidden = true;
      return;
    }
    refreshList();
    refreshDetail().then(() => $("#detail").focus());
  }

  function changed() {
    clearTimeout(pending);
    pending = setTimeout(() => {
      refreshList();
      refreshDetail();
    }, 150);
  }

  async function give(answer) {
    if (!shown || !selected) return;
    const outcome = $("#outcome");
    const reason = $("#reason").value.trim();
    if (answer === "reject" && !reason) {
      outcome.className = "refused";
      outcome.textContent = "Say why you reject it: a rejection needs a reason.";
      $("#reason").focus();
      return;
    }
    const buttons = [$("#approve"), $("#reject")];
    buttons.forEach((b) => { b.disabled = true; });
    outcome.className = "";
    outcome.textContent = answer === "approve" ? "Approving…" : "Rejecting…";
    const { namespace, name } = selected;
    try {
      const { body } = await fetchJSON(`/api/decisions/${encodeURIComponent(namespace)}/${encodeURIComponent(name)}/answer`, {
        method: "POST",
        headers: { "Content-Type": "application/json", Accept: "application/json" },
        body: JSON.stringify({ answer, reason, digest: shown.digest }),
      });
      outcome.className = body.counted ? "counted" : "refused";
      outcome.textContent = body.message;
    } catch (e) {
      outcome.className = "refused";
      outcome.textContent = `The page could not reach kubectl decision ui: ${e.message}`;
    } finally {
      buttons.forEach((b) => { b.disabled = false; });
      changed();
    }
  }

  function tick() {
    const expiry = $("#expiry");
    if (expiry && shown && shown.expiresAt) expiry.textContent = left(shown.expiresAt);
  }

  // The secret came in the address once; the cookie carries it from now on.
  if (location.search) history.replaceState(null, "", `/${location.hash}`);
  $("#approve").addEventListener("click", () => give("approve"));
  $("#reject").addEventListener("click", () => give("reject"));
  $("#answer").addEventListener("submit", (event) => event.preventDefault());
  window.addEventListener("hashchange", route);
  const events = new EventSource("/api/events");
  events.addEventListener("changed", changed);
  events.addEventListener("open", changed);
  events.addEventListener("error", () => {
    $("#watch").className = "problem";
    $("#watch").textContent = "Lost the connection to kubectl decision ui; reconnecting…";
  });
  setInterval(tick, 1000);
  route();
  refreshList();
})();
