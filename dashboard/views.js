/**
 * The dashboard's pieces as DOM: each function takes plain data (and the
 * clock) and returns elements; app.js decides when to draw them.
 */
import { h } from "./dom.js";
import {
  duration,
  money,
  ms,
  nyTime,
  percent,
  price,
  quantity,
  relativeTime,
  signClass,
  stageLabel,
} from "./format.js";

/** The deployment guide's targets, ms: decision < 500, webhook ack ("signal processing") < 100. */
export const TARGETS = { endToEnd: 500, webhookAck: 100 };

/** Pipeline stages in the order a signal passes them. */
export const STAGES = [
  "queue",
  "load",
  "market_hours",
  "context",
  "gex",
  "book",
  "decide",
  "write",
];

/** A time cell's pair: New York clock time, and a relative time app.js keeps fresh. */
function when(at, now) {
  return [
    h("div", { class: "t" }, nyTime(at, now)),
    h("div", { class: "sub rel", "data-at": at ?? "" }, relativeTime(at, now)),
  ];
}

function directionChip(direction) {
  const d = String(direction ?? "").toUpperCase();
  const tone = d === "CALL" ? "call" : d === "PUT" ? "put" : "other";
  return h("span", { class: `dir ${tone}` }, d || "—");
}

// ---- live feed ----------------------------------------------------------------------------------

/**
 * The decision part of a feed row: ENTER / EXIT / REJECT with its reason and
 * message, FAILED when the job gave up, or "pending" while the pipeline works.
 */
function decisionCell(signal, decision) {
  if (!decision) {
    const failed = signal.job_status === "failed";
    return h(
      "td",
      { class: "decision" },
      h(
        "div",
        { class: "line" },
        failed
          ? h("span", { class: "badge failed" }, "FAILED")
          : h("span", { class: "badge pending" }, h("span", { class: "spinner" }), "pending"),
      ),
      h(
        "div",
        { class: "msg sub" },
        failed ? "The pipeline gave up on this signal; see /errors" : "Deciding…",
      ),
    );
  }
  const outcome = String(decision.outcome ?? "").toUpperCase();
  const details = [];
  if (outcome !== "REJECT" && decision.quantity !== null && decision.quantity !== undefined) {
    details.push(
      h(
        "span",
        { class: "qty" },
        `${quantity(decision.quantity)}${decision.price ? ` @ ${price(decision.price)}` : ""}`,
      ),
    );
  }
  if (decision.degraded) details.push(h("span", { class: "tag warn" }, "degraded"));
  return h(
    "td",
    { class: "decision" },
    h(
      "div",
      { class: "line" },
      h("span", { class: `badge ${outcome.toLowerCase()}` }, outcome || "?"),
      decision.reason_code ? h("code", { class: "reason" }, decision.reason_code) : null,
      ...details,
    ),
    decision.message
      ? h("div", { class: "msg sub", title: decision.message }, decision.message)
      : null,
  );
}

/** One signal of the live feed as a table row, keyed by `data-id`. */
export function signalRow(signal, decision, now) {
  const outcome = decision ? String(decision.outcome ?? "").toLowerCase() : "pending";
  return h(
    "tr",
    { "data-id": signal.id, class: `signal-row outcome-${outcome}` },
    h("td", { class: "time" }, when(signal.received_at, now)),
    h(
      "td",
      { class: "sym" },
      h("div", { class: "symbol" }, signal.symbol ?? "—"),
      h("div", { class: "sub" }, signal.timeframe ?? ""),
    ),
    h(
      "td",
      { class: "signal" },
      directionChip(signal.direction),
      h("div", { class: "sub" }, String(signal.action ?? "").toLowerCase()),
    ),
    h("td", { class: "num price" }, price(signal.price)),
    decisionCell(signal, decision),
  );
}

// ---- header and health --------------------------------------------------------------------------

const HEALTH_TONE = { healthy: "ok", degraded: "warn", unhealthy: "bad" };

/** Tone for one component: ok when healthy, bad when down, warn for stale/missing/lagging. */
function componentTone(c) {
  if (!c) return "muted";
  if (c.healthy) return "ok";
  if (c.status === "down") return "bad";
  if (c.status === "unknown") return "muted";
  return "warn";
}

export function componentDetail(name, c) {
  if (!c) return "";
  switch (name) {
    case "database":
      return [c.latency_ms !== undefined ? ms(c.latency_ms) : c.error, c.driver]
        .filter(Boolean).join(" · ");
    case "context":
    case "gex": {
      if (c.age_seconds === null || c.age_seconds === undefined) {
        return c.status === "unknown" ? "" : "no data yet";
      }
      const symbols = typeof c.symbols === "number" ? ` · ${c.symbols} sym` : "";
      // The symbols whose data stopped while others' is fresh: why the status says stale.
      const named = Array.isArray(c.stale_symbols) ? c.stale_symbols.slice(0, 3) : [];
      const more = (c.stale_symbol_count ?? named.length) - named.length;
      const behind = named.length === 0
        ? ""
        : ` · behind: ${named.map((s) => `${s.symbol} ${duration(s.age_seconds)}`).join(", ")}${
          more > 0 ? ` +${more}` : ""
        }`;
      return `age ${duration(c.age_seconds)} / max ${
        duration(c.max_age_seconds)
      }${symbols}${behind}`;
    }
    case "pipeline": {
      if (c.pending === undefined) return "";
      const parts = [`${c.pending} pending`];
      if (c.running) parts.push(`${c.running} running`);
      if (c.failed) parts.push(`${c.failed} failed`);
      if (c.pending > 0) parts.push(`oldest ${duration(c.oldest_pending_seconds)}`);
      return parts.join(" · ");
    }
  }
  return "";
}

const COMPONENT_NAMES = {
  database: "Database",
  context: "Context",
  gex: "GEX",
  pipeline: "Pipeline",
};

/** The four component badges from a /health report (null: not known yet). */
export function componentBadges(report) {
  return Object.entries(COMPONENT_NAMES).map(([key, label]) => {
    const c = report?.components?.[key];
    const tone = componentTone(c);
    return h(
      "div",
      { class: `component tone-${tone}`, "data-component": key, title: c?.checked ?? "" },
      h("span", { class: "dot" }),
      h(
        "div",
        { class: "component-text" },
        h(
          "div",
          { class: "component-head" },
          h("span", { class: "component-name" }, label),
          h("span", { class: "component-status" }, c?.status ?? "…"),
        ),
        h("div", { class: "component-detail" }, componentDetail(key, c)),
      ),
    );
  });
}

/** Tone and label for the overall health pill. */
export function healthPill(report, error) {
  if (error) return { tone: "bad", label: "Unreachable" };
  if (!report) return { tone: "muted", label: "Health…" };
  return {
    tone: HEALTH_TONE[report.status] ?? "muted",
    label: report.status.charAt(0).toUpperCase() + report.status.slice(1),
  };
}

// ---- key figures --------------------------------------------------------------------------------

function kpi(label, value, sub, tone = "") {
  return h(
    "div",
    { class: `kpi ${tone}` },
    h("div", { class: "kpi-label" }, label),
    h("div", { class: "kpi-value" }, value),
    h("div", { class: "kpi-sub" }, sub),
  );
}

/** The strip of key figures from /metrics (null: not loaded, or locked). */
export function kpiCards(m) {
  const p = m?.positions;
  const s = m?.signals;
  const l = m?.latency;
  const refused = s
    ? Object.entries(s.refusalsByCode ?? {}).filter(([code]) => code !== "DUPLICATE")
      .reduce((sum, [, n]) => sum + n, 0)
    : null;
  // The API says 0 when nothing is decided yet; that is "unknown", not "all refused".
  const acceptance = s && s.acceptedSignals + s.rejectedSignals > 0
    ? percent(s.acceptanceRate)
    : "—";
  const e2e = l?.endToEnd?.p95 ?? null;
  const ack = l?.webhookAck?.p95 ?? null;
  const overTarget = (v, target) => v !== null && v > target ? "warn" : "";
  return [
    kpi(
      "Realized PnL",
      p ? money(p.realizedPnL, { signed: true }) : "—",
      p ? `${p.closedPositions} closed` : "",
      p ? signClass(p.realizedPnL) : "",
    ),
    kpi(
      "Unrealized PnL",
      p ? money(p.unrealizedPnL, { signed: true }) : "—",
      p
        ? `${p.openPositions} open · ${money(p.totalExposure, { whole: true })} exposure` +
          (p.unmarkedPositions ? ` · ${p.unmarkedPositions} unmarked` : "")
        : "",
      p ? signClass(p.unrealizedPnL) : "",
    ),
    kpi(
      "Signals",
      s ? s.totalSignals.toLocaleString("en-US") : "—",
      s
        ? `${acceptance} accepted · ${s.pendingSignals} pending` +
          (s.failedSignals ? ` · ${s.failedSignals} failed` : "")
        : "",
      s?.failedSignals ? "warn" : "",
    ),
    kpi(
      "Decision p95",
      l ? ms(e2e) : "—",
      `target < ${ms(TARGETS.endToEnd)} · end to end`,
      overTarget(e2e, TARGETS.endToEnd),
    ),
    kpi(
      "Webhook ack p95",
      l ? ms(ack) : "—",
      `target < ${ms(TARGETS.webhookAck)} · this instance`,
      overTarget(ack, TARGETS.webhookAck),
    ),
    kpi(
      "Refused",
      refused === null ? "—" : refused.toLocaleString("en-US"),
      s ? `${s.duplicates} duplicates · ${s.authFailures} auth` : "",
      refused ? "warn" : "",
    ),
  ];
}

// ---- positions ----------------------------------------------------------------------------------

/** Open positions, newest first, with their mark and unrealized PnL when a spot is known. */
export function positionRows(positions, now) {
  return positions.map((p) =>
    h(
      "tr",
      { "data-id": p.id, class: "position-row" },
      h(
        "td",
        { class: "sym" },
        h(
          "div",
          { class: "symbol-line" },
          h("span", { class: "symbol" }, p.symbol),
          directionChip(p.direction),
        ),
        h(
          "div",
          { class: "sub rel", "data-at": p.opened_at ?? "" },
          relativeTime(p.opened_at, now),
        ),
      ),
      h("td", { class: "num" }, quantity(p.quantity)),
      h("td", { class: "num" }, price(p.entry_price)),
      h(
        "td",
        { class: "num", title: p.mark_as_of ? `spot as of ${nyTime(p.mark_as_of, now)} ET` : "" },
        p.mark === null || p.mark === undefined
          ? h("span", { class: "muted" }, "no spot")
          : p.mark_stale
          ? h("span", { class: "muted" }, `${price(p.mark)} stale`)
          : price(p.mark),
      ),
      h(
        "td",
        { class: `num pnl ${signClass(p.unrealized_pnl)}` },
        p.unrealized_pnl === null || p.unrealized_pnl === undefined
          ? "—"
          : money(p.unrealized_pnl, { signed: true }),
      ),
    )
  );
}

// ---- latency ------------------------------------------------------------------------------------

/** Rows of the latency table: end to end, each stage with a bar of its share, then the ack. */
export function latencyRows(latency) {
  if (!latency) return [];
  const stages = latency.stages ?? {};
  const keys = [
    ...STAGES.filter((k) => stages[k]),
    ...Object.keys(stages).filter((k) => !STAGES.includes(k)),
  ];
  const widest = Math.max(1e-9, ...keys.map((k) => stages[k]?.p50 ?? 0));
  const row = (label, summary, { cls = "", bar = null, target = null } = {}) =>
    h(
      "tr",
      { class: cls, "data-stage": label },
      h("th", { scope: "row" }, stageLabel(label)),
      h("td", { class: "bar-col" }, bar),
      h("td", { class: "num" }, ms(summary?.p50)),
      h(
        "td",
        { class: `num${target !== null && summary?.p95 > target ? " over" : ""}` },
        ms(summary?.p95),
      ),
      h("td", { class: "num" }, ms(summary?.p99)),
    );
  const share = (summary) => {
    const fill = h("span", { class: "bar-fill" });
    // CSSOM, not a style attribute: allowed under the page's style-src 'self'.
    fill.style.width = `${Math.max(2, Math.round(((summary?.p50 ?? 0) / widest) * 100))}%`;
    return h("span", { class: "bar-track", title: "p50, relative to the slowest stage" }, fill);
  };
  return [
    row("end_to_end", latency.endToEnd, { cls: "total", target: TARGETS.endToEnd }),
    ...keys.map((k) => row(k, stages[k], { bar: share(stages[k]) })),
    row("webhook_ack", latency.webhookAck, { cls: "total", target: TARGETS.webhookAck }),
  ];
}

// ---- refused webhooks ---------------------------------------------------------------------------

/** The last refused webhooks from /errors. */
export function errorItems(errors, now) {
  return errors.map((e) =>
    h(
      "li",
      { title: typeof e.payload === "string" ? e.payload.slice(0, 500) : "" },
      h(
        "div",
        { class: "error-head" },
        h("code", { class: "reason" }, e.code),
        h("span", { class: "muted" }, String(e.http_status ?? "")),
        h(
          "span",
          { class: "sub rel", "data-at": e.created_at ?? "" },
          relativeTime(e.created_at, now),
        ),
      ),
      h("div", { class: "msg sub" }, e.message ?? ""),
    )
  );
}
