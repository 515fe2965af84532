// Small formatting helpers: every one returns text or a DOM node built with h().

import { h, link } from './dom.js';

export const EMPTY_ROOT = 'e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855';

export function short(hex, head = 10, tail = 6) {
  const s = String(hex ?? '');
  return s.length > head + tail + 1 ? `${s.slice(0, head)}…${s.slice(-tail)}` : s;
}

export function amount(value) {
  return typeof value === 'number' ? value.toLocaleString('en-US') : String(value ?? '—');
}

export function time(ms) {
  if (!ms) return '—';
  const date = new Date(ms);
  const pad = (n) => String(n).padStart(2, '0');
  return `${date.getFullYear()}-${pad(date.getMonth() + 1)}-${pad(date.getDate())} ` +
    `${pad(date.getHours())}:${pad(date.getMinutes())}:${pad(date.getSeconds())}`;
}

export function ago(ms) {
  if (!ms) return '';
  const seconds = Math.max(0, Math.round((Date.now() - ms) / 1000));
  if (seconds < 60) return `${seconds}s ago`;
  if (seconds < 3600) return `${Math.floor(seconds / 60)}m ago`;
  if (seconds < 86400) return `${Math.floor(seconds / 3600)}h ago`;
  return `${Math.floor(seconds / 86400)}d ago`;
}

export function isAddress(value) {
  return typeof value === 'string' && /^cm1[02-9ac-hj-np-z]{20,}$/.test(value);
}

export function account(address, text) {
  if (!address) return h('span', { class: 'muted' }, '—');
  return link(['account', address], text ?? short(address, 12, 6), { class: 'mono', title: address });
}

export function block(height) {
  return link(['block', height], `#${height}`);
}

export function txLink(hash, text) {
  return link(['tx', hash], text ?? short(hash), { class: 'mono', title: hash });
}

export function badge(text, kind) {
  return h('span', { class: `badge ${kind || String(text).toLowerCase()}` }, text);
}

export function stars(milli) {
  // milli: rating × 1000 (integer), rendered as five stars and the number.
  const full = Math.round(milli / 1000);
  return h('span', { class: 'stars', title: `${(milli / 1000).toFixed(2)} of 5` },
    '★'.repeat(full), h('span', { class: 'dim' }, '☆'.repeat(Math.max(0, 5 - full))));
}

// A key/value pair from a tx body or an event, with ids and addresses turned into links.
export function value(key, v) {
  if (v === null || v === undefined || v === '') return h('span', { class: 'muted' }, '—');
  if ((key === 'listing_id' || key === 'listing') && Number.isInteger(v) && v > 0) return link(['listing', v], `listing #${v}`);
  if ((key === 'order_id' || key === 'order') && Number.isInteger(v) && v > 0) return link(['order', v], `order #${v}`);
  if (isAddress(v)) return account(v, v);
  if (typeof v === 'number') return amount(v);
  if (Array.isArray(v)) return v.map((x) => value(key, x));
  if (typeof v === 'object') return JSON.stringify(v);
  return String(v);
}

export function rows(pairs) {
  return h('dl', { class: 'kv' }, pairs.filter(Boolean).map(([k, v]) => [h('dt', {}, k), h('dd', {}, v)]));
}

export function table(headings, bodyRows, empty = 'Nothing yet.') {
  if (!bodyRows.length) return h('p', { class: 'muted empty' }, empty);
  return h('table', {},
    h('thead', {}, h('tr', {}, headings.map((x) => h('th', {}, x)))),
    h('tbody', {}, bodyRows));
}

// One line that says what a tx does, with links to what it touches.
export function summary(tx) {
  const b = tx.body || {};
  switch (tx.type) {
    case 'transfer': return [amount(b.amount), ' to ', account(b.to)];
    case 'list': return [b.listing_id ? ['update ', value('listing_id', b.listing_id), ': '] : '',
      h('q', {}, b.title), ` · ${amount(b.price)} × ${amount(b.quantity)}`];
    case 'delist': return value('listing_id', b.listing_id);
    case 'buy': return [`${amount(b.quantity)} of `, value('listing_id', b.listing_id)];
    case 'ship': return [value('order_id', b.order_id), ` via ${b.carrier}`];
    case 'track': return [value('order_id', b.order_id), ` at ${b.location}`];
    case 'review': return [value('order_id', b.order_id), ' ', stars(b.rating * 1000)];
    case 'resolve': return [value('order_id', b.order_id), ` · ${amount(b.buyer_amount)} to buyer`];
    case 'reward': return [value('order_id', b.order_id), ` · ${amount(b.amount)}`];
    case 'validator_vote': return [['add', 'remove', 'set power'][b.action - 1] || 'vote', ' ', short(b.pubkey)];
    default: return b.order_id ? value('order_id', b.order_id) : '';
  }
}

export function resultBadge(result) {
  if (!result) return badge('pending', 'muted');
  return result.code === 0 ? badge('ok', 'ok') : badge(result.name || `code ${result.code}`, 'failed');
}
