/**
 * A tiny DOM builder. Text always goes in as text nodes (never as HTML), so
 * a symbol or message from a webhook cannot inject markup, and the page
 * needs no inline script or style under its Content-Security-Policy.
 */

const SVG_NS = "http://www.w3.org/2000/svg";

/** `h("td", { class: "num", title: "…" }, "text", childNode, null)`: null and false are skipped. */
export function h(tag, attrs = {}, ...children) {
  return build(document.createElement(tag), attrs, children);
}

/** The same for SVG elements. */
export function s(tag, attrs = {}, ...children) {
  return build(document.createElementNS(SVG_NS, tag), attrs, children);
}

function build(el, attrs, children) {
  for (const [name, value] of Object.entries(attrs ?? {})) {
    if (value === null || value === undefined || value === false) continue;
    if (name.startsWith("on") && typeof value === "function") {
      el.addEventListener(name.slice(2), value);
    } else {
      el.setAttribute(name, value === true ? "" : String(value));
    }
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : String(child));
  }
  return el;
}

/** Replaces the children of the element with this id. */
export function fill(id, ...children) {
  const el = document.getElementById(id);
  el.replaceChildren(
    ...children.flat().filter((c) => c !== null && c !== undefined && c !== false),
  );
  return el;
}
