/**
 * The operator dashboard: loads history, then applies live events from
 * `/events`, and refreshes health and metrics every 10 s.
 *
 * Data flow:
 * - `/health` is public and polled from the start;
 * - everything else needs the operator token when the server has one: a
 *   refusal anywhere (401, or 400 for a header it cannot read) or a token that
 *   cannot be sent locks the page and asks for it once (kept in sessionStorage);
 * - the event stream is opened first and history is loaded once it is
 *   `ready`, so nothing committed in between is missed; every record is
 *   keyed by id, so history and live events may overlap freely;
 * - position events and decisions trigger a quick refresh of the open
 *   positions (their marks) and the metrics, coalesced.
 */
import { authHeaders, getJson, normalizeToken, token, UnauthorizedError } from "./api.js";
import { barChart, stepChart } from "./chart.js";
import { fill, h } from "./dom.js";
import { money, ms, nyTime, relativeTime, signClass } from "./format.js";
import { EventStream } from "./sse.js";
import {
  componentBadges,
  errorItems,
  healthPill,
  kpiCards,
  latencyRows,
  positionRows,
  signalRow,
  TARGETS,
} from "./views.js";

const FEED_LIMIT = 200;
const LATENCY_SAMPLES = 100;
/** Closed positions kept for the PnL chart: the newest, as many as the history loads. */
const CLOSED_LIMIT = 500;
const REFRESH_MS = 10_000;

const state = {
  /** Signals in the feed, by id. */
  signals: new Map(),
  /** Decisions by signal id (one may arrive before its signal is loaded). */
  decisions: new Map(),
  /** Open positions by id. */
  open: new Map(),
  /** The newest closed positions by id (CLOSED_LIMIT), for the realized PnL chart. */
  closed: new Map(),
  /** End-to-end latency of recent decisions, by decision id. */
  latency: new Map(),
  health: null,
  healthError: null,
  metrics: null,
  errors: [],
  /** Server clock minus browser clock, from /health, so relative times match the server. */
  clockOffset: 0,
  locked: false,
  historyLoaded: false,
  updatedAt: null,
  /** Why the last refresh failed (a 503 QUERY_TIMEOUT, say), until one succeeds. */
  refreshError: null,
};

const now = () => Date.now() + state.clockOffset;

// ---- feed ---------------------------------------------------------------------------------------

/** Feed rows by signal id, kept in the DOM in seq order (newest first). */
const rows = new Map();

function seqOf(signal) {
  return Number(signal.seq ?? 0);
}

/** Draws (or redraws) one signal's row; `flash` marks it as just changed. */
function drawSignal(signal, flash) {
  const row = signalRow(signal, state.decisions.get(signal.id), now());
  if (flash) row.classList.add("flash");
  const body = document.getElementById("feed-body");
  const old = rows.get(signal.id);
  rows.set(signal.id, row);
  if (old) return old.replaceWith(row);
  // Insert before the first row with a lower seq; live signals nearly always go on top.
  const seq = seqOf(signal);
  const next = [...body.children].find((tr) => seqOf(state.signals.get(tr.dataset.id) ?? {}) < seq);
  body.insertBefore(row, next ?? null);
}

function upsertSignal(raw, { live = false } = {}) {
  const known = state.signals.get(raw.id);
  const signal = { ...known, ...raw };
  state.signals.set(signal.id, signal);
  drawSignal(signal, live && !known);
  trimFeed();
  drawFeedMeta();
}

/** Merges a decision; history and events describe the same decision, events with more fields. */
function applyDecision(signalId, decision, { live = false } = {}) {
  const known = state.decisions.get(signalId);
  state.decisions.set(signalId, live ? { ...known, ...decision } : { ...decision, ...known });
  const signal = state.signals.get(signalId);
  if (signal) drawSignal(signal, live && !known);
}

function trimFeed() {
  if (state.signals.size <= FEED_LIMIT) return;
  const oldest = [...state.signals.values()].sort((a, b) => seqOf(a) - seqOf(b));
  for (const s of oldest.slice(0, state.signals.size - FEED_LIMIT)) {
    state.signals.delete(s.id);
    state.decisions.delete(s.id);
    rows.get(s.id)?.remove();
    rows.delete(s.id);
  }
}

function drawFeedMeta() {
  document.getElementById("feed-empty").hidden = state.signals.size > 0;
  const pending = [...state.signals.values()]
    .filter((s) => !state.decisions.has(s.id) && s.job_status !== "failed").length;
  document.getElementById("feed-count").textContent = state.signals.size === 0
    ? ""
    : `${state.signals.size} shown${pending ? ` · ${pending} pending` : ""}`;
}

// ---- positions and charts -----------------------------------------------------------------------

/** A position from the read API or a position event (both snake_case), in the page's shape. */
function positionFrom(p) {
  return {
    id: p.id,
    symbol: p.symbol,
    direction: p.direction,
    quantity: p.quantity ?? null,
    entry_price: p.entry_price ?? null,
    opened_at: p.opened_at ?? null,
    exit_price: p.exit_price ?? null,
    closed_at: p.closed_at ?? null,
    realized_pnl: p.realized_pnl ?? null,
    // Only /positions?status=open marks a position; an event leaves these to the next refresh.
    mark: p.mark ?? null,
    mark_as_of: p.mark_as_of ?? null,
    mark_stale: p.mark_stale ?? null,
    unrealized_pnl: p.unrealized_pnl ?? null,
  };
}

function applyPosition(event) {
  const p = positionFrom(event);
  if (event.change === "closed" || p.closed_at) {
    state.open.delete(p.id);
    state.closed.set(p.id, p);
    trimClosed();
    drawPnlChart();
  } else {
    // Keep a known mark until the refresh brings a new one.
    state.open.set(p.id, { ...p, ...pickMark(state.open.get(p.id)) });
  }
  drawPositions();
}

/**
 * Keeps the newest CLOSED_LIMIT closes: a day of closes would otherwise grow the map and the
 * chart's dots without end. The chart starts from what the older ones made (see drawPnlChart).
 */
function trimClosed() {
  if (state.closed.size <= CLOSED_LIMIT) return;
  const oldest = [...state.closed.values()]
    .sort((a, b) => (Date.parse(a.closed_at) || 0) - (Date.parse(b.closed_at) || 0));
  for (const p of oldest.slice(0, state.closed.size - CLOSED_LIMIT)) state.closed.delete(p.id);
}

function pickMark(known) {
  return known
    ? {
      mark: known.mark,
      mark_as_of: known.mark_as_of,
      mark_stale: known.mark_stale,
      unrealized_pnl: known.unrealized_pnl,
    }
    : {};
}

function drawPositions() {
  const open = [...state.open.values()].sort((a, b) =>
    String(b.opened_at).localeCompare(String(a.opened_at))
  );
  fill("positions-body", positionRows(open, now()));
  document.getElementById("positions-empty").hidden = open.length > 0;
  const total = open.reduce((sum, p) => sum + (p.unrealized_pnl ?? 0), 0);
  const summary = document.getElementById("positions-summary");
  summary.replaceChildren(
    open.length === 0 ? "" : h(
      "span",
      {},
      `${open.length} open · `,
      h("span", { class: signClass(total) }, money(total, { signed: true })),
    ),
  );
}

function drawPnlChart() {
  // Cumulative realized PnL at each close, oldest first.
  const closes = [...state.closed.values()]
    .filter((p) => p.closed_at && Number.isFinite(Number(p.realized_pnl)))
    .sort((a, b) => Date.parse(a.closed_at) - Date.parse(b.closed_at));
  // Only the newest closes are loaded: start from what the older ones made, so the line
  // ends at the true total.
  const realized = state.metrics?.positions?.realizedPnL ?? null;
  const loaded = closes.reduce((sum, p) => sum + Number(p.realized_pnl), 0);
  const older = state.metrics?.positions?.closedPositions > closes.length ? realized - loaded : 0;
  let total = older;
  const points = closes.map((p) => {
    total += Number(p.realized_pnl);
    return {
      x: Date.parse(p.closed_at),
      y: total,
      label: `${p.symbol} ${p.direction} ${money(p.realized_pnl, { signed: true })} → ${
        money(total, { signed: true })
      } · ${nyTime(p.closed_at, now())} ET`,
    };
  });
  const figure = document.getElementById("pnl-total");
  const shown = realized ?? (points.length ? total : null);
  figure.textContent = shown === null ? "" : money(shown, { signed: true });
  figure.className = `figure ${signClass(shown)}`;
  stepChart(document.getElementById("pnl-chart"), points, {
    start: older,
    format: (v) => (v === 0 ? "$0" : money(v, { whole: Math.abs(v) >= 1000 })),
    formatX: (t) => nyTime(t, now()),
    now: now(),
    emptyText: "No closed positions yet",
  });
}

function addLatencySample(id, at, endToEndMs, label) {
  if (!Number.isFinite(Number(endToEndMs))) return;
  state.latency.set(id, { at: Date.parse(at) || now(), y: Number(endToEndMs), label });
  if (state.latency.size > LATENCY_SAMPLES) {
    const oldest = [...state.latency.entries()].sort((a, b) => a[1].at - b[1].at);
    for (const [key] of oldest.slice(0, state.latency.size - LATENCY_SAMPLES)) {
      state.latency.delete(key);
    }
  }
}

function drawLatencyChart() {
  const values = [...state.latency.values()].sort((a, b) => a.at - b.at);
  const p95 = state.metrics?.latency?.endToEnd?.p95 ?? null;
  document.getElementById("latency-note").textContent = values.length
    ? `last ${values.length} decisions`
    : "";
  barChart(document.getElementById("latency-chart"), values, {
    format: (v) => (v === 0 ? "0" : ms(v)),
    reference: p95 === null ? undefined : { y: p95, label: `p95 ${ms(p95)}` },
    warnAbove: TARGETS.endToEnd,
    emptyText: "No decisions yet",
  });
}

// ---- health, metrics, errors --------------------------------------------------------------------

function drawHealth() {
  fill("components", componentBadges(state.health));
  const pill = healthPill(state.health, state.healthError);
  setPill("health-pill", pill.tone, pill.label);
  const banner = document.getElementById("health-message");
  const message = state.healthError
    ? `Cannot reach the service: ${state.healthError}`
    : state.health && state.health.status !== "healthy"
    ? state.health.message
    : "";
  banner.hidden = !message;
  banner.textContent = message;
  banner.className = `banner tone-${pill.tone}`;
}

function drawMetrics() {
  fill("kpis", kpiCards(state.metrics));
  fill("latency-body", latencyRows(state.metrics?.latency));
  const l = state.metrics?.latency;
  document.getElementById("latency-window").textContent = l ? `${l.window} · ${l.unit}` : "";
  drawPnlChart();
  drawLatencyChart();
}

function drawErrors() {
  fill("errors-list", errorItems(state.errors, now()));
  document.getElementById("errors-empty").hidden = state.errors.length > 0;
}

function setPill(id, tone, label) {
  const pill = document.getElementById(id);
  pill.className = `pill tone-${tone}`;
  pill.querySelector(".label").textContent = label;
}

function drawUpdated() {
  const updated = document.getElementById("updated");
  const when = state.updatedAt ? `Updated ${nyTime(state.updatedAt, now())} ET` : "Not loaded yet";
  // Shown, not only logged: the figures above are as old as `when` says, and this is why.
  updated.textContent = state.refreshError === null
    ? when
    : `${when} · last refresh failed: ${state.refreshError}`;
  updated.classList.toggle("refresh-failed", state.refreshError !== null);
}

/** Relative times age in place, without redrawing rows. */
function tickRelativeTimes() {
  const t = now();
  for (const el of document.querySelectorAll(".rel[data-at]")) {
    el.textContent = relativeTime(el.dataset.at, t);
  }
}

// ---- loading ------------------------------------------------------------------------------------

async function refreshHealth() {
  const sent = Date.now();
  try {
    const report = await getJson("/health", { auth: false });
    const received = Date.now();
    const serverAt = Date.parse(report.timestamp);
    // Only a real skew is worth correcting; a few hundred ms is the round trip.
    if (Number.isFinite(serverAt)) {
      const offset = serverAt - (sent + received) / 2;
      state.clockOffset = Math.abs(offset) > 2000 ? offset : 0;
    }
    state.health = report;
    state.healthError = null;
  } catch (error) {
    state.healthError = error instanceof Error ? error.message : String(error);
  }
  drawHealth();
}

/** A response that came back after the page was locked (token forgotten or refused). */
class StaleResponse extends Error {}

/** GET with the token; data that arrives after the page locked is dropped, not drawn. */
async function load(path) {
  const body = await getJson(path);
  if (state.locked) throw new StaleResponse(path);
  return body;
}

/** Runs authenticated loads; a refused token locks the page and asks for it. */
async function authed(work) {
  if (state.locked) return;
  try {
    await work();
    state.updatedAt = now();
    state.refreshError = null;
    drawUpdated();
  } catch (error) {
    if (error instanceof UnauthorizedError) lock(error.message);
    else if (!(error instanceof StaleResponse)) {
      console.warn("Dashboard refresh failed:", error);
      state.refreshError = error instanceof Error ? error.message : String(error);
      drawUpdated();
    }
  }
}

async function loadMetrics() {
  state.metrics = await load("/metrics");
  drawMetrics();
}

async function loadOpenPositions() {
  const page = await load("/positions?status=open&limit=500");
  state.open = new Map(page.items.map((p) => [p.id, positionFrom(p)]));
  drawPositions();
}

async function loadClosedPositions() {
  const page = await load(`/positions?status=closed&limit=${CLOSED_LIMIT}`);
  for (const p of page.items) state.closed.set(p.id, positionFrom(p));
  trimClosed();
  drawPnlChart();
}

async function loadErrors() {
  const page = await load("/errors?limit=6");
  state.errors = page.items;
  drawErrors();
}

/** The history, loaded once per session; a failed load is tried again on the next call. */
let historyLoad = null;
function ensureHistory() {
  historyLoad ??= loadHistory().catch((error) => {
    historyLoad = null;
    throw error;
  });
  return historyLoad;
}

async function loadHistory() {
  const decisions = await load(`/decisions?limit=${LATENCY_SAMPLES}`);
  for (const d of decisions.items) {
    applyDecision(d.signal_id, d);
    addLatencySample(
      d.id,
      d.created_at,
      d.timings?.end_to_end_ms,
      decisionLabel(d, d.timings?.end_to_end_ms),
    );
  }
  drawLatencyChart();
  await Promise.all([
    loadRecentSignals(),
    loadOpenPositions(),
    loadClosedPositions(),
    loadMetrics(),
    loadErrors(),
  ]);
  state.historyLoaded = true;
}

/** The newest signals with their decision or job status, merged into the feed. */
async function loadRecentSignals() {
  const signals = await load("/signals?limit=50");
  for (const s of signals.items) {
    if (s.outcome) {
      applyDecision(s.id, {
        outcome: s.outcome,
        reason_code: s.reason_code,
        message: s.decision_message,
      });
    }
    upsertSignal(s);
  }
}

/**
 * A job that gives up sends a `failure` event; in case it was missed (the
 * stream was down), a signal pending for long is looked up again.
 */
function stillPending() {
  const cutoff = now() - 15_000;
  return [...state.signals.values()].some((s) =>
    !state.decisions.has(s.id) && s.job_status !== "failed" && Date.parse(s.received_at) < cutoff
  );
}

function decisionLabel(d, endToEnd) {
  return `${d.symbol ?? ""} ${d.outcome ?? ""} ${d.reason_code ?? ""} · ${ms(endToEnd)}`.trim();
}

/**
 * Events close together cause one refresh, shortly after the first of them: waiting for the
 * last would put it off for as long as they keep coming (a busy open, up to the 10 s poll).
 */
let refreshTimer = null;
let refreshClosed = false;
function scheduleRefresh({ closed = false } = {}) {
  refreshClosed ||= closed;
  if (refreshTimer !== null) return;
  refreshTimer = setTimeout(() => {
    refreshTimer = null;
    const withClosed = refreshClosed;
    refreshClosed = false;
    authed(() =>
      Promise.all([loadMetrics(), loadOpenPositions(), withClosed ? loadClosedPositions() : null])
    );
  }, 400);
}

// ---- live events --------------------------------------------------------------------------------

const stream = new EventStream({
  url: "/events",
  headers: authHeaders,
  onEvent(type, data) {
    if (type === "signal") {
      upsertSignal(data, { live: true });
    } else if (type === "decision") {
      applyDecision(data.signal_id, data, { live: true });
      addLatencySample(
        data.id,
        data.event_at,
        data.end_to_end_ms,
        decisionLabel(data, data.end_to_end_ms),
      );
      drawLatencyChart();
      drawFeedMeta();
      scheduleRefresh();
    } else if (type === "position") {
      applyPosition(data);
      scheduleRefresh({ closed: data.change === "closed" });
    } else if (type === "failure" && state.signals.has(data.signal_id)) {
      // The pipeline gave up on this signal: no decision will come.
      upsertSignal({ id: data.signal_id, job_status: "failed" }, { live: true });
      scheduleRefresh();
    }
  },
  onCursorLost() {
    // The server never sent the id the stream resumed from (a replaced database): what is on
    // screen may be from another database. Drop it; the stream starts from now and loads
    // history again once it is ready.
    clearData();
  },
  onReady() {
    // History once, after the stream has fixed its starting point; later "ready"s are reconnects
    // that resume from Last-Event-ID, so only the marks and metrics need a refresh.
    authed(() =>
      state.historyLoaded ? Promise.all([loadMetrics(), loadOpenPositions()]) : ensureHistory()
    );
  },
  onState(status, detail) {
    if (status === "live") setPill("conn", "ok", "Live");
    else if (status === "connecting") setPill("conn", "muted", "Connecting…");
    else if (status === "stopped") setPill("conn", "muted", state.locked ? "Locked" : "Stopped");
    else if (status === "reconnecting") {
      const wait = detail?.inMs ? ` in ${Math.ceil(detail.inMs / 1000)} s` : "…";
      setPill("conn", "warn", `Reconnecting${wait}`);
      // The stream has never come up: show history anyway rather than an empty page.
      if (!state.historyLoaded && detail?.inMs) authed(ensureHistory);
    }
  },
  onUnauthorized() {
    lock("Operator token required");
  },
});

// ---- token --------------------------------------------------------------------------------------

const dialog = () => document.getElementById("token-dialog");

/** Stops everything that needs the token and asks for it (once, however many requests failed). */
function lock(message) {
  if (state.locked) return;
  state.locked = true;
  stream.stop();
  clearTimeout(refreshTimer);
  refreshTimer = null;
  // A stored token that was refused is wrong (or was rotated): drop it.
  if (token.get()) {
    token.clear();
    message = "That token was not accepted";
  }
  setPill("conn", "muted", "Locked");
  document.getElementById("unlock").hidden = false;
  document.getElementById("forget").hidden = true;
  askForToken(message);
}

function askForToken(message) {
  const error = document.getElementById("token-error");
  // The server's plain "token required" needs no extra words; a refusal or "forgotten" does.
  error.hidden = !message || message.startsWith("Operator token required");
  error.textContent = message ?? "";
  if (!dialog().open) dialog().showModal();
  document.getElementById("token-input").focus();
}

function unlock() {
  state.locked = false;
  document.getElementById("unlock").hidden = true;
  document.getElementById("forget").hidden = !token.get();
  stream.start();
}

/** Drops everything loaded with the token, so nothing stays on screen after "forget". */
function clearData() {
  for (const map of [state.signals, state.decisions, state.open, state.closed, state.latency]) {
    map.clear();
  }
  rows.clear();
  state.metrics = null;
  state.errors = [];
  state.historyLoaded = false;
  historyLoad = null;
  stream.lastEventId = "";
  fill("feed-body");
  drawFeedMeta();
  drawPositions();
  drawMetrics();
  drawErrors();
}

function wireToken() {
  document.getElementById("token-form").addEventListener("submit", (e) => {
    e.preventDefault();
    const value = normalizeToken(document.getElementById("token-input").value);
    if (!value) return;
    token.set(value);
    document.getElementById("token-input").value = "";
    dialog().close();
    unlock();
  });
  document.getElementById("token-cancel").addEventListener("click", () => dialog().close());
  document.getElementById("unlock").addEventListener("click", () => askForToken());
  document.getElementById("forget").addEventListener("click", () => {
    token.clear();
    clearData();
    lock("Token forgotten");
  });
}

// ---- start --------------------------------------------------------------------------------------

function start() {
  wireToken();
  drawHealth();
  drawMetrics();
  drawPositions();
  drawErrors();
  drawFeedMeta();
  refreshHealth();
  document.getElementById("forget").hidden = !token.get();
  stream.start();

  // One periodic refresh at a time: a slow one (a read may wait READ_QUERY_TIMEOUT_MS, 10 s) is
  // not joined by the next, which would only add reads to the ones the server is short of.
  let polling = null;
  setInterval(() => {
    refreshHealth();
    if (!state.historyLoaded || polling !== null) return;
    polling = authed(() =>
      Promise.all([
        loadMetrics(),
        loadOpenPositions(),
        loadErrors(),
        stillPending() ? loadRecentSignals() : null,
      ])
    ).finally(() => (polling = null));
  }, REFRESH_MS);
  setInterval(() => {
    tickRelativeTimes();
    drawUpdated();
  }, 5000);
  // Charts are drawn to their box's width.
  let resizeTimer = null;
  new ResizeObserver(() => {
    clearTimeout(resizeTimer);
    resizeTimer = setTimeout(() => {
      drawPnlChart();
      drawLatencyChart();
    }, 100);
  }).observe(document.querySelector(".side"));
}

start();
