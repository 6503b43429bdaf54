/** Text formatting for the printed report: aligned columns and figures. Pure. */
/** Aligned columns: text left, numbers right. */
export function formatTable(headers: string[], rows: string[][]): string {
  const widths = headers.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? "").length)));
  const numeric = headers.map((_, i) =>
    rows.length > 0 && rows.every((r) => /^[-+]?[\d.,]+( ?%| ms)?$|^-$/.test(r[i] ?? "-"))
  );
  const line = (cells: string[]) =>
    cells.map((c, i) => (numeric[i] ? c.padStart(widths[i]) : c.padEnd(widths[i]))).join("  ")
      .trimEnd();
  return [line(headers), line(widths.map((w) => "-".repeat(w))), ...rows.map(line)].join("\n");
}

export const ms = (v: number | null | undefined) =>
  v === null || v === undefined
    ? "-"
    : v >= 100
    ? v.toFixed(0)
    : v >= 10
    ? v.toFixed(1)
    : v.toFixed(2);
export const rate = (v: number | null | undefined) =>
  v === null || v === undefined ? "-" : Math.round(v).toLocaleString("en-US");
export const pct = (v: number | null) => (v === null ? "-" : `${v.toFixed(0)} %`);
