// The only way this app builds the page. Chain data (titles, notes, reviews, origins) is
// attacker-controlled, so it only ever becomes text nodes or attributes set through the DOM
// API: no HTML string is ever parsed, and links can only point inside the app.

const ATTRIBUTES = new Set(['id', 'title', 'type', 'colspan', 'aria-label', 'datetime']);

export function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (name === 'class') el.className = value;
    else if (name === 'href') el.setAttribute('href', appHref(value));
    else if (name.startsWith('data-') || ATTRIBUTES.has(name)) el.setAttribute(name, String(value));
    else throw new Error(`attribute not allowed: ${name}`);
  }
  append(el, children);
  return el;
}

export function append(el, children) {
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return el;
}

export function replace(el, ...children) {
  el.replaceChildren();
  return append(el, children);
}

function appHref(value) {
  const href = String(value);
  if (!href.startsWith('#/')) throw new Error(`link outside the app: ${href}`);
  return href;
}

// A link to an app route; parts are URI-encoded so no text can change the route's shape.
export function link(parts, text, attrs = {}) {
  const route = '#/' + parts.map((p) => encodeURIComponent(String(p))).join('/');
  return h('a', { ...attrs, href: route }, text);
}
