/**
 * Two small charts drawn by hand into an <svg>, sized to its box (call again
 * on resize): a step line of a running total (realized PnL, green above zero
 * and red below) and bars of recent values (end-to-end latency) with a
 * dashed reference line. Styling lives in style.css (`.chart …` classes).
 */
import { s } from "./dom.js";

const PAD = { top: 10, right: 10, bottom: 20, left: 58 };

/** About `count` round tick values covering [min, max]. */
export function niceTicks(min, max, count = 4) {
  if (!(max > min)) {
    const pad = Math.abs(min) > 0 ? Math.abs(min) * 0.1 : 1;
    return niceTicks(min - pad, max + pad, count);
  }
  const raw = (max - min) / Math.max(1, count - 1);
  const magnitude = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 2.5, 5, 10].map((m) => m * magnitude).find((st) => st >= raw) ?? raw;
  const ticks = [];
  for (let v = Math.floor(min / step) * step; v <= max + step * 1e-9; v += step) {
    ticks.push(Math.round(v / step) * step);
  }
  if (ticks[ticks.length - 1] < max) ticks.push(ticks[ticks.length - 1] + step);
  return ticks;
}

function frame(svg, height) {
  const width = Math.max(200, Math.round(svg.parentElement?.clientWidth || 320));
  svg.setAttribute("viewBox", `0 0 ${width} ${height}`);
  svg.setAttribute("width", String(width));
  svg.setAttribute("height", String(height));
  svg.replaceChildren();
  return {
    width,
    height,
    x0: PAD.left,
    x1: width - PAD.right,
    y0: height - PAD.bottom,
    y1: PAD.top,
  };
}

function yAxis(svg, f, ticks, y, format) {
  for (const t of ticks) {
    svg.append(
      s("line", { class: "grid", x1: f.x0, x2: f.x1, y1: y(t), y2: y(t) }),
      s("text", { class: "tick", x: f.x0 - 6, y: y(t) + 4, "text-anchor": "end" }, format(t)),
    );
  }
}

function empty(svg, f, text) {
  svg.append(
    s("text", {
      class: "empty",
      x: (f.x0 + f.x1) / 2,
      y: (f.y0 + f.y1) / 2 + 4,
      "text-anchor": "middle",
    }, text),
  );
}

/**
 * A running total as a step line from `start`: `points` are `{ x: epochMs, y: total }`
 * sorted by x; the line runs on flat to `now`.
 */
export function stepChart(
  svg,
  points,
  { height = 150, format, formatX, now, emptyText, start = 0 },
) {
  const f = frame(svg, height);
  if (points.length === 0) return empty(svg, f, emptyText);
  const xs = points.map((p) => p.x);
  const ys = [0, start, ...points.map((p) => p.y)];
  const xMin = Math.min(...xs);
  const xMax = Math.max(now, xMin + 60_000);
  const ticks = niceTicks(Math.min(...ys), Math.max(...ys), 4);
  const [lo, hi] = [ticks[0], ticks[ticks.length - 1]];
  const x = (v) => f.x0 + ((v - xMin) / (xMax - xMin)) * (f.x1 - f.x0);
  const y = (v) => f.y0 - ((v - lo) / (hi - lo)) * (f.y0 - f.y1);
  yAxis(svg, f, ticks, y, format);

  // The starting level, then a step at each close, then flat to now.
  let d = `M${x(xMin)},${y(start)}`;
  for (const p of points) d += `H${x(p.x)}V${y(p.y)}`;
  d += `H${x(xMax)}`;
  const area = `${d}V${y(0)}Z`;

  // The same area twice, clipped above and below zero, so gains are green and losses red.
  const id = svg.id || "chart";
  svg.append(
    s(
      "defs",
      {},
      s("clipPath", { id: `${id}-above` }, s("rect", { x: 0, y: 0, width: f.width, height: y(0) })),
      s(
        "clipPath",
        { id: `${id}-below` },
        s("rect", { x: 0, y: y(0), width: f.width, height: Math.max(0, f.height - y(0)) }),
      ),
    ),
    s("path", { class: "area pos", d: area, "clip-path": `url(#${id}-above)` }),
    s("path", { class: "area neg", d: area, "clip-path": `url(#${id}-below)` }),
    s("line", { class: "zero", x1: f.x0, x2: f.x1, y1: y(0), y2: y(0) }),
    s("path", { class: "line pos", d, "clip-path": `url(#${id}-above)` }),
    s("path", { class: "line neg", d, "clip-path": `url(#${id}-below)` }),
  );
  for (const p of points) {
    svg.append(
      s(
        "circle",
        { class: `dot ${p.y >= 0 ? "pos" : "neg"}`, cx: x(p.x), cy: y(p.y), r: 2.5 },
        s("title", {}, p.label ?? format(p.y)),
      ),
    );
  }
  svg.append(
    s("text", { class: "tick", x: f.x0, y: f.height - 4 }, formatX(xMin)),
    s("text", { class: "tick", x: f.x1, y: f.height - 4, "text-anchor": "end" }, formatX(xMax)),
  );
}

/**
 * Recent values as bars, oldest on the left: `values` are `{ y, label }`.
 * A dashed line marks `reference` ({ y, label }); bars above `warnAbove` are flagged.
 */
export function barChart(svg, values, { height = 150, format, reference, warnAbove, emptyText }) {
  const f = frame(svg, height);
  if (values.length === 0) return empty(svg, f, emptyText);
  const max = Math.max(...values.map((v) => v.y), reference?.y ?? 0);
  const ticks = niceTicks(0, max > 0 ? max : 1, 4);
  const hi = ticks[ticks.length - 1];
  const y = (v) => f.y0 - (v / hi) * (f.y0 - f.y1);
  yAxis(svg, f, ticks, y, format);
  // At least 20 slots, so a few bars stay slim; they line up on the right, newest last.
  const slot = (f.x1 - f.x0) / Math.max(values.length, 20);
  const width = Math.max(1, slot * 0.7);
  const left = f.x1 - values.length * slot;
  values.forEach((v, i) => {
    const top = y(Math.max(0, v.y));
    svg.append(
      s(
        "rect",
        {
          class: `bar${warnAbove !== undefined && v.y > warnAbove ? " warn" : ""}`,
          x: left + i * slot + (slot - width) / 2,
          y: top,
          width,
          height: Math.max(1, f.y0 - top),
          rx: Math.min(2, width / 3),
        },
        s("title", {}, v.label ?? format(v.y)),
      ),
    );
  });
  if (reference && Number.isFinite(reference.y)) {
    svg.append(
      s("line", { class: "ref", x1: f.x0, x2: f.x1, y1: y(reference.y), y2: y(reference.y) }),
      // On the left: the bars fill from the right, so that side is the free one.
      s("text", { class: "ref-label", x: f.x0 + 4, y: y(reference.y) - 4 }, reference.label),
    );
  }
  svg.append(
    s("text", { class: "tick", x: left, y: f.height - 4 }, "older"),
    s("text", { class: "tick", x: f.x1, y: f.height - 4, "text-anchor": "end" }, "latest"),
  );
}
