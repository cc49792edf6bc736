// The status page: one snapshot a second from /status/events, drawn with plain DOM.
// Every value is set as text (never as HTML), so nothing in a decision can become markup.
"use strict";

const HISTORY = 120; // points of the events-per-second chart, one a second
const DECISIONS = ["APPROVE", "REVIEW", "DECLINE"];
const flow = { in: [], out: [] };
const number = new Intl.NumberFormat("en-US", { maximumFractionDigits: 1 });

function $(id) { return document.getElementById(id); }
function text(id, value) { $(id).textContent = value; }
function n(value) { return value === null || value === undefined ? "–" : number.format(value); }
function ms(value, top) {
  if (value === null || value === undefined) return top ? "> " + n(top) + " ms" : "–";
  return "≤ " + n(value) + " ms";
}
function bound(seconds) {
  if (seconds === null) return "+∞";
  return seconds >= 1 ? n(seconds) + "s" : n(seconds * 1000);
}
function el(tag, cls, content) {
  const node = document.createElement(tag);
  if (cls) node.className = cls;
  if (content !== undefined && content !== null) node.textContent = String(content);
  return node;
}
function replace(parent, children) { parent.replaceChildren(...children); }
function time(rfc3339) { return rfc3339 ? rfc3339.slice(11, 23) : "–"; }

function drawIdentity(s) {
  text("identity-client", s.identity.client_id);
  text("identity-host", s.identity.host);
  text("identity-pid", s.identity.pid);
  text("group-id", s.identity.group_id);
  const member = s.identity.member_id;
  text("member-id", member ? member + (s.identity.member_host ? " (" + s.identity.member_host + ")" : "") : "unknown yet");
  const g = s.group;
  const state = g.state === null ? "no statistics yet"
    : g.state + ", " + g.join_state + (g.coordinator_state ? "; group " + g.coordinator_state + " with " + g.members + " member(s)" : "");
  text("group-state", state);
  text("group-rebalances", g.rebalances === null ? "–"
    : n(g.rebalances) + (g.last_rebalance_s !== null ? ", the last " + n(g.last_rebalance_s) + " s ago" : "")
      + (g.rebalance_reason ? " (" + g.rebalance_reason + ")" : ""));
  const owned = s.partitions.owned;
  text("partitions", owned.length ? owned.map((p) => p.topic + "/" + p.partition).join(", ") : "none");
  replace($("partition-lag"), owned.map((p) => {
    const row = el("tr");
    row.append(el("td", "mono", p.topic + "/" + p.partition), el("td", null, n(p.lag)));
    return row;
  }));
}

function drawNumbers(s) {
  text("rate-in", n(s.rates.in_per_s));
  text("rate-out", n(s.rates.out_per_s));
  text("in-flight", n(s.intake.in_flight));
  text("in-flight-of", "of " + n(s.intake.max_in_flight) + (s.intake.paused ? " · paused" : ""));
  text("lag-total", n(s.partitions.lag_total));
  text("total-consumed", n(s.totals.consumed));
  text("total-decisions", n(s.totals.decisions));
  text("total-dead-letters", n(s.totals.dead_letters));
}

function drawFlow(s) {
  if (s.rates.in_per_s === null) return;
  for (const [key, value] of [["in", s.rates.in_per_s], ["out", s.rates.out_per_s]]) {
    flow[key].push(value);
    if (flow[key].length > HISTORY) flow[key].shift();
  }
  const top = Math.max(1, ...flow.in, ...flow.out);
  text("flow-top", n(top));
  for (const key of ["in", "out"]) {
    const points = flow[key].map((v, i) => {
      const x = (600 * (HISTORY - flow[key].length + i)) / (HISTORY - 1);
      return x.toFixed(1) + "," + (78 - (v / top) * 74).toFixed(1);
    });
    $("flow-" + key).setAttribute("points", points.join(" "));
  }
}

// The bar never goes past its end: the server caps what it shows at the limit, and so does
// this, whatever a future server sends. A count over the limit is said in words instead.
function drawBudgets(s) {
  replace($("budgets"), s.allocations.map((a) => {
    const box = el("div", "budget");
    box.dataset.task = a.name;
    box.dataset.limit = a.limit;
    box.dataset.inFlight = a.in_flight;
    box.dataset.shown = a.shown;
    const title = el("div", "title");
    const circuit = el("span", "badge " + a.circuit, "circuit " + a.circuit.replace("_", "-"));
    title.append(el("span", "name", a.name), circuit);
    const bar = el("div", "bar");
    const fill = el("div", "fill");
    const fraction = a.limit > 0 ? Math.min(1, Math.max(0, a.shown / a.limit)) : 0;
    fill.style.width = (fraction * 100).toFixed(2) + "%";
    if (fraction >= 1) fill.classList.add("full");
    bar.append(fill);
    bar.setAttribute("role", "meter");
    bar.setAttribute("aria-valuemin", "0");
    bar.setAttribute("aria-valuemax", String(a.limit));
    bar.setAttribute("aria-valuenow", String(a.shown));
    const detail = el("div", "detail",
      n(a.shown) + " / " + n(a.limit) + " executes in flight · " + n(a.queued) + " queued · "
      + n(a.executes_per_s) + " executes/s");
    if (a.over_limit) {
      detail.append(" · ", el("span", "over",
        "the count says " + n(a.in_flight) + ": the budget shrank while executes ran"));
    }
    box.append(title, bar, detail);
    return box;
  }));
}

function drawMix(s) {
  const total = DECISIONS.reduce((sum, d) => sum + (s.decisions[d] || 0), 0);
  replace($("decision-mix"), DECISIONS.filter((d) => s.decisions[d]).map((d) => {
    const part = el("span", d);
    part.style.width = ((100 * s.decisions[d]) / total).toFixed(2) + "%";
    part.title = d;
    return part;
  }));
  replace($("decision-legend"), DECISIONS.map((d) => {
    const count = s.decisions[d] || 0;
    const share = total ? " (" + ((100 * count) / total).toFixed(1) + "%)" : "";
    return el("li", d, d + " " + n(count) + share);
  }).concat([el("li", null, "of them fallbacks " + n(s.totals.fallbacks))]));
}

function drawCounts(id, counts) {
  const entries = Object.entries(counts).sort((a, b) => b[1] - a[1] || a[0].localeCompare(b[0]));
  const top = Math.max(1, ...entries.map((e) => e[1]));
  replace($(id), entries.map(([name, count]) => {
    const row = el("li", count ? null : "zero");
    row.dataset.name = name;
    const bar = el("div", "minibar");
    const fill = el("span");
    fill.style.width = ((100 * count) / top).toFixed(1) + "%";
    bar.append(fill);
    row.append(el("span", null, name), bar, el("span", "n", n(count)));
    return row;
  }));
}

function drawLatency(s) {
  const l = s.latency;
  text("latency-window", "last " + n(l.window_s) + " s, " + n(l.count) + " decisions");
  text("latency-p50", ms(l.p50_ms, l.count ? l.top_ms : null));
  text("latency-p99", ms(l.p99_ms, l.count ? l.top_ms : null));
  text("latency-total-p50", ms(l.total_p50_ms, l.total_count ? l.top_ms : null));
  text("latency-total-p99", ms(l.total_p99_ms, l.total_count ? l.top_ms : null));
  const top = Math.max(1, ...l.buckets.map((b) => b.count));
  replace($("latency-histogram"), l.buckets.map((b) => {
    const col = el("div", "col");
    const bar = el("span");
    bar.style.height = ((100 * b.count) / top).toFixed(1) + "%";
    bar.title = n(b.count) + " decisions " + (b.le === null ? "over " + n(l.top_ms) + " ms" : "≤ " + n(b.le * 1000) + " ms");
    col.append(bar, el("label", null, bound(b.le)));
    return col;
  }));
}

function drawRecent(s) {
  replace($("recent-decisions").tBodies[0], s.recent.decisions.slice(0, 15).map((d) => {
    const row = el("tr");
    const badge = el("td");
    badge.append(el("span", "badge " + d.decision, d.decision));
    row.append(
      el("td", "mono", time(d.decided_at)), el("td", "mono", d.event_id), badge,
      el("td", null, n(d.score)), el("td", null, d.reasons.join(", ")),
      el("td", null, d.fallback_reason || ""), el("td", null, n(d.latency_ms) + " ms"),
      el("td", "mono", d.partition + ":" + d.offset));
    return row;
  }));
  replace($("recent-dead-letters").tBodies[0], s.recent.dead_letters.slice(0, 10).map((d) => {
    const row = el("tr");
    row.append(
      el("td", "mono", time(d.failed_at)), el("td", null, d.stage),
      el("td", "mono", d.error_class.split(".").pop()), el("td", "message", d.message),
      el("td", null, d.http_status || ""), el("td", null, d.attempts),
      el("td", "mono", d.partition + ":" + d.offset));
    return row;
  }));
}

function draw(s) {
  drawIdentity(s);
  drawNumbers(s);
  drawFlow(s);
  drawBudgets(s);
  drawMix(s);
  drawCounts("fallbacks", s.fallbacks);
  drawCounts("dead-letter-stages", s.dead_letters);
  drawLatency(s);
  drawRecent(s);
  text("updated", "updated " + time(s.at) + " UTC");
  document.body.dataset.frames = String(Number(document.body.dataset.frames) + 1);
}

function connect() {
  const source = new EventSource("status/events");
  source.onopen = () => {
    $("connection").className = "dot up";
    text("connection-text", "live");
  };
  source.onmessage = (message) => draw(JSON.parse(message.data));
  source.onerror = () => {
    // EventSource reconnects by itself; say so meanwhile.
    $("connection").className = "dot down";
    text("connection-text", "reconnecting");
  };
}

connect();
