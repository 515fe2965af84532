// The explorer: hash routes rendered into <main> from the node's JSON-RPC answers.

import { h, link, replace } from './dom.js';
import {
  EMPTY_ROOT, account, ago, amount, badge, block, resultBadge, rows, short, stars, summary,
  table, time, txLink, value,
} from './format.js';
import { currentHeight, onHeight, onMode, startLive } from './live.js';
import { RpcError, batch, rpc } from './rpc.js';

const main = document.getElementById('main');
const LATEST = 20;
let renderToken = 0;
let cleanup = () => {};

// --- pages -------------------------------------------------------------------------------

async function blockRows(headers) {
  const busy = headers.filter((x) => x.txs_root !== EMPTY_ROOT);
  const blocks = await batch(busy.map((x) => ['block', { height: x.height }]));
  const txCount = new Map(busy.map((x, i) => [x.height, blocks[i] instanceof RpcError ? '?' : blocks[i].txs.length]));
  return headers.map((x) => {
    const count = txCount.get(x.height) || 0;
    return h('tr', { class: count ? 'busy' : '', 'data-height': x.height },
      h('td', {}, block(x.height)),
      h('td', {}, link(['block', x.height], short(x.hash), { class: 'mono', title: x.hash })),
      h('td', { title: time(x.time_ms) }, time(x.time_ms), ' ', h('span', { class: 'muted' }, ago(x.time_ms))),
      h('td', { class: 'num' }, count ? h('strong', {}, count) : h('span', { class: 'muted' }, '0')),
      h('td', {}, account(x.proposer)));
  });
}

async function home(token) {
  const [status, validators, chain] = await batch([['status'], ['validators'], ['blockchain']]);
  for (const answer of [status, validators, chain]) if (answer instanceof RpcError) throw answer;
  if (token !== renderToken) return;
  const heightCell = h('strong', { id: 'tip' }, chain.last_height);
  const body = h('tbody', { id: 'blocks' }, await blockRows(chain.headers));
  let top = chain.last_height;
  replace(main,
    h('section', { class: 'cards' },
      card('Chain', status.node_info.chain_id),
      card('Height', heightCell),
      card('Validators', `${validators.validators.length} · power ${amount(validators.total_power)}`),
      card('Node', `${status.node_info.moniker} · v${status.node_info.version}`)),
    h('section', {},
      h('h2', {}, 'Latest blocks ', h('span', { class: 'muted small' }, 'updating live; blocks with transactions are highlighted')),
      h('table', { id: 'latest' },
        h('thead', {}, h('tr', {}, ['Height', 'Hash', 'Time', 'Txs', 'Proposer'].map((x) => h('th', {}, x)))),
        body)));
  let busy = false;
  const update = async (height) => {
    if (busy || height <= top || token !== renderToken) return;
    busy = true;
    try {
      const fresh = await rpc('blockchain', { min_height: Math.max(top + 1, height - LATEST + 1), max_height: height });
      const rowsAdded = await blockRows(fresh.headers);
      if (token !== renderToken) return;
      for (const row of rowsAdded.reverse()) { row.classList.add('new'); body.prepend(row); }
      while (body.children.length > LATEST) body.lastElementChild.remove();
      top = Math.max(top, fresh.last_height);
      replace(heightCell, top);
    } catch (err) {
      console.error(err);
    } finally {
      busy = false;
    }
  };
  cleanup = onHeight(update);
  update(currentHeight());
}

function card(label, content) {
  return h('div', { class: 'card' }, h('div', { class: 'label' }, label), h('div', { class: 'value' }, content));
}

async function blockPage(token, height) {
  const [answer, status] = await batch([['block', { height }], ['status']]);
  if (answer instanceof RpcError) throw answer;
  const top = status instanceof RpcError ? height : status.sync_info.latest_block_height;
  const header = answer.header;
  const results = await batch(answer.txs.slice(0, 200).map((t) => ['tx', { hash: t.hash }]));
  if (token !== renderToken) return;
  const txRows = answer.txs.map((t, i) => h('tr', {},
    h('td', {}, t.hash ? txLink(t.hash) : h('span', { class: 'muted' }, 'undecodable')),
    h('td', {}, badge(t.type || '?', 'type')),
    h('td', {}, account(t.sender)),
    h('td', {}, summary(t)),
    h('td', {}, resultBadge(results[i] instanceof RpcError ? null : results[i] && results[i].result))));
  const signatures = answer.last_commit ? answer.last_commit.signatures.length : 0;
  replace(main,
    h('div', { class: 'title-row' },
      h('h1', {}, `Block #${header.height}`),
      h('span', { class: 'pager' },
        header.height > 1 ? link(['block', header.height - 1], '← previous') : '',
        header.height < top ? link(['block', header.height + 1], 'next →') : '')),
    rows([
      ['Hash', h('span', { class: 'mono' }, header.hash)],
      ['Time', [time(header.time_ms), ' ', h('span', { class: 'muted' }, ago(header.time_ms))]],
      ['Proposer', account(header.proposer, header.proposer)],
      ['Previous block', header.height > 1 ? link(['block', header.height - 1], header.prev_hash, { class: 'mono' }) : '—'],
      ['App hash', h('span', { class: 'mono' }, header.app_hash)],
      ['Txs root', h('span', { class: 'mono' }, header.txs_root)],
      ['Validators hash', h('span', { class: 'mono' }, header.validators_hash)],
      ['Previous block signed by', `${signatures} validator${signatures === 1 ? '' : 's'}`],
      ['Chain', header.chain_id],
    ]),
    h('h2', {}, `Transactions (${answer.txs.length})`),
    table(['Hash', 'Type', 'From', 'What', 'Result'], txRows, 'No transactions in this block.'));
}

async function txPage(token, hash) {
  const answer = await rpc('tx', { hash });
  if (token !== renderToken) return;
  const tx = answer.tx;
  const result = answer.result;
  const body = tx.body || {};
  const events = (result.events || []).map((e) => h('div', { class: 'event' },
    h('div', { class: 'event-kind' }, e.kind),
    rows(Object.entries(e.attributes || {}).map(([k, v]) => [k, value(k, v)]))));
  const orderId = body.order_id || (result.events || []).map((e) => e.attributes && e.attributes.order_id).find(Boolean);
  replace(main,
    h('div', { class: 'title-row' }, h('h1', {}, `Transaction `, badge(tx.type || '?', 'type')), resultBadge(result)),
    rows([
      ['Hash', h('span', { class: 'mono' }, answer.hash)],
      ['Block', [block(answer.height), h('span', { class: 'muted' }, ` · position ${answer.index}`)]],
      ['From', account(tx.sender, tx.sender)],
      ['Nonce', tx.nonce],
      ['Fee', [amount(tx.fee), result.fee_charged !== undefined ? h('span', { class: 'muted' }, ` (charged ${amount(result.fee_charged)})`) : '']],
      ['Result', result.code === 0 ? 'ok' : `${result.name} (${result.code}): ${result.message}`],
      orderId ? ['Order', link(['order', orderId], `order #${orderId} (status and provenance)`)] : null,
      ['Size', `${tx.size} bytes`],
    ]),
    h('h2', {}, 'Body'),
    rows(Object.entries(body).map(([k, v]) => [k, value(k, v)])),
    h('h2', {}, `Events (${events.length})`),
    events.length ? h('div', { class: 'events' }, events) : h('p', { class: 'muted' }, 'No events (a failed tx only pays its fee).'));
}

function orderRows(items) {
  return items.map((o) => h('tr', {},
    h('td', {}, link(['order', o.id], `#${o.id}`)),
    h('td', {}, link(['listing', o.listing_id], `#${o.listing_id}`)),
    h('td', {}, account(o.buyer)),
    h('td', { class: 'num' }, amount(o.amount)),
    h('td', {}, badge(o.status)),
    h('td', {}, block(o.created_height))));
}

const ORDER_HEADINGS = ['Order', 'Listing', 'Buyer', 'Amount', 'Status', 'Created'];

function listingRows(items) {
  return items.map((l) => h('tr', {},
    h('td', {}, link(['listing', l.id], `#${l.id}`)),
    h('td', {}, link(['listing', l.id], l.title)),
    h('td', { class: 'num' }, amount(l.price)),
    h('td', { class: 'num' }, amount(l.quantity)),
    h('td', { class: 'num' }, amount(l.sold)),
    h('td', {}, l.active ? badge('active', 'ok') : badge('delisted', 'muted'))));
}

async function accountPage(token, address) {
  const [acct, rep, listings, bought, sold, txs] = await batch([
    ['account', { address }], ['reputation', { merchant: address }],
    ['listings', { merchant: address, limit: 100 }], ['orders', { buyer: address, limit: 100 }],
    ['orders', { merchant: address, limit: 100 }], ['tx_search', { account: address, limit: 25 }]]);
  if (acct instanceof RpcError) throw acct;
  if (token !== renderToken) return;
  const txRows = txs instanceof RpcError ? [] : txs.txs.map((t) => h('tr', {},
    h('td', {}, txLink(t.hash)), h('td', {}, block(t.height)), h('td', {}, badge(t.tx.type || '?', 'type')),
    h('td', {}, summary(t.tx)), h('td', {}, resultBadge(t.result))));
  const items = (x) => (x instanceof RpcError ? [] : x.items);
  replace(main,
    h('h1', {}, 'Account'),
    h('p', { class: 'mono big' }, address),
    h('section', { class: 'cards' },
      card('Balance', amount(acct.balance)),
      card('Nonce', acct.nonce),
      card('Reputation', rep.count ? [stars(rep.average_milli), ` ${(rep.average_milli / 1000).toFixed(2)} · ${rep.count} review${rep.count === 1 ? '' : 's'}`] : h('span', { class: 'muted' }, 'no reviews yet'))),
    h('h2', {}, 'Listings'),
    table(['#', 'Title', 'Price', 'Left', 'Sold', 'State'], listingRows(items(listings)), 'No listings.'),
    h('h2', {}, 'Orders placed'),
    table(ORDER_HEADINGS, orderRows(items(bought)), 'No orders placed.'),
    h('h2', {}, 'Orders received'),
    table(ORDER_HEADINGS, orderRows(items(sold)), 'No orders received.'),
    h('h2', {}, 'Recent transactions'),
    table(['Hash', 'Block', 'Type', 'What', 'Result'], txRows, 'No transactions.'));
}

async function listingPage(token, id) {
  const [item, orders, reviews] = await batch([['listing', { id }], ['orders', { listing: id, limit: 100 }], ['reviews', { listing: id, limit: 100 }]]);
  if (item instanceof RpcError) throw item;
  if (token !== renderToken) return;
  const reviewItems = reviews instanceof RpcError ? [] : reviews.items;
  const sum = reviewItems.reduce((total, r) => total + r.rating, 0);
  const averageMilli = reviewItems.length ? Math.round((sum * 1000) / reviewItems.length) : 0;
  replace(main,
    h('div', { class: 'title-row' }, h('h1', {}, `Listing #${item.id}: `, h('span', { class: 'user-text' }, item.title)),
      item.active ? badge('active', 'ok') : badge('delisted', 'muted')),
    h('section', { class: 'cards' },
      card('Price', amount(item.price)),
      card('Left', amount(item.quantity)),
      card('Sold', amount(item.sold)),
      card('Average rating', reviewItems.length
        ? h('span', { id: 'average-rating' }, stars(averageMilli), ` ${(averageMilli / 1000).toFixed(1)} from ${reviewItems.length} review${reviewItems.length === 1 ? '' : 's'}`)
        : h('span', { class: 'muted', id: 'average-rating' }, 'no reviews yet'))),
    rows([
      ['Merchant', account(item.merchant, item.merchant)],
      ['Origin', item.origin ? h('span', { class: 'user-text' }, item.origin) : '—'],
      ['Ships within', `${item.ship_within} blocks`],
      ['Confirm within', `${item.confirm_within} blocks`],
      ['Listed at', block(item.created_height)],
      ['Updated at', block(item.updated_height)],
      item.metadata ? ['Metadata', h('span', { class: 'mono' }, item.metadata)] : null,
    ]),
    h('h2', {}, `Reviews (${reviewItems.length})`),
    reviewItems.length ? h('div', { class: 'reviews' }, reviewItems.map((r) => h('div', { class: 'review' },
      h('div', {}, stars(r.rating * 1000), ' ', h('span', { class: 'muted' }, 'by '), account(r.buyer),
        h('span', { class: 'muted' }, ' · '), link(['order', r.order_id], `order #${r.order_id}`),
        h('span', { class: 'muted' }, ' · block '), block(r.height)),
      r.text ? h('p', { class: 'user-text' }, r.text) : null)))
      : h('p', { class: 'muted empty' }, 'No reviews yet.'),
    h('h2', {}, 'Orders'),
    table(ORDER_HEADINGS, orderRows(orders instanceof RpcError ? [] : orders.items), 'No orders yet.'));
}

// The status changes of one order, from the order_status events of its buyer's txs.
async function statusSteps(order) {
  const steps = [];
  let cursor = null;
  for (let page = 0; page < 4; page++) {
    const found = await rpc('tx_search', { account: order.buyer, limit: 100, ...(cursor ? { cursor } : {}) });
    for (const t of found.txs) {
      for (const e of t.result.events || []) {
        const a = e.attributes || {};
        if (a.order_id !== order.id) continue;
        if (e.kind === 'order_status') steps.push({ status: a.status, height: t.height, hash: t.hash, reason: a.reason });
        if (e.kind === 'review') steps.push({ status: 'REVIEWED', height: t.height, hash: t.hash, reason: `rated ${a.rating}/5` });
      }
    }
    cursor = found.next_cursor;
    if (!cursor) break;
  }
  steps.sort((x, y) => x.height - y.height);
  if (!steps.some((s) => s.status === 'PAID')) steps.unshift({ status: 'PAID', height: order.created_height });
  if (order.closed_height && !steps.some((s) => s.status === order.status)) {
    steps.push({ status: order.status, height: order.closed_height, reason: 'deadline passed' });
  }
  return steps;
}

async function orderPage(token, id) {
  const [order, trail] = await batch([['order', { id }], ['provenance', { order: id }]]);
  if (order instanceof RpcError) throw order;
  const steps = await statusSteps(order);
  if (token !== renderToken) return;
  const deadline = order.status === 'PAID' ? `must ship by block ${order.ship_by}`
    : order.status === 'SHIPPED' ? `buyer confirms by block ${order.confirm_by}` : null;
  const timeline = h('ol', { class: 'timeline', id: 'timeline' },
    steps.map((s) => h('li', {},
      badge(s.status), ' at ', block(s.height),
      s.hash ? [h('span', { class: 'muted' }, ' · '), txLink(s.hash)] : '',
      s.reason ? h('span', { class: 'muted' }, ` · ${s.reason}`) : '')),
    deadline ? h('li', { class: 'pending' }, badge('next', 'muted'), ` ${deadline}`) : null);
  const checkpoints = trail instanceof RpcError ? [] : trail.checkpoints;
  const provenance = h('ol', { class: 'trail', id: 'trail' },
    h('li', {}, h('div', { class: 'step-kind' }, 'origin'),
      h('div', { class: 'user-text' }, trail.listing && trail.listing.origin ? trail.listing.origin : 'no origin given'),
      h('div', { class: 'muted small' }, 'listed at block ', block(trail.listing ? trail.listing.created_height : order.created_height),
        ' by ', account(order.merchant))),
    checkpoints.map((c) => h('li', {},
      h('div', { class: 'step-kind' }, c.kind),
      h('div', { class: 'user-text' }, c.location || '—'),
      c.note ? h('div', { class: 'user-text note' }, c.note) : null,
      h('div', { class: 'muted small' }, 'block ', block(c.height), ' by ', account(c.actor)))),
    order.status === 'COMPLETED' ? h('li', { class: 'done' }, h('div', { class: 'step-kind' }, 'delivered'),
      h('div', {}, 'confirmed by the buyer at block ', block(order.closed_height))) : null);
  replace(main,
    h('div', { class: 'title-row' }, h('h1', {}, `Order #${order.id}`), badge(order.status)),
    h('div', { class: 'two' },
      h('div', {},
        rows([
          ['Listing', link(['listing', order.listing_id], `#${order.listing_id}${trail.listing ? ': ' + trail.listing.title : ''}`)],
          ['Buyer', account(order.buyer, order.buyer)],
          ['Merchant', account(order.merchant, order.merchant)],
          ['Quantity', amount(order.quantity)],
          ['Unit price', amount(order.unit_price)],
          ['Amount', amount(order.amount)],
          ['Escrow held', amount(order.escrow)],
          ['Carrier', order.carrier ? h('span', { class: 'user-text' }, order.carrier) : '—'],
          ['Tracking id', order.tracking_id ? h('span', { class: 'user-text mono' }, order.tracking_id) : '—'],
          order.carrier_address ? ['Carrier account', account(order.carrier_address)] : null,
          order.referrer ? ['Referrer', account(order.referrer)] : null,
        ]),
        h('h2', {}, 'Status timeline'), timeline),
      h('div', {}, h('h2', {}, 'Provenance trail'), provenance)));
}

async function validatorsPage(token) {
  const [current, status] = await batch([['validators'], ['status']]);
  if (current instanceof RpcError) throw current;
  const top = status.sync_info.latest_block_height;
  const heights = [];
  for (let x = top; x >= Math.max(1, top - LATEST + 1); x--) heights.push(x);
  const answers = await batch(heights.flatMap((x) => [['commit', { height: x }], ['validators', { height: x }]]));
  if (token !== renderToken) return;
  const lastSigned = new Map();
  const signedCount = new Map();
  heights.forEach((x, i) => {
    const cert = answers[2 * i];
    const set = answers[2 * i + 1];
    if (cert instanceof RpcError || set instanceof RpcError) return;
    for (const s of cert.commit.signatures) {
      const v = set.validators[s.validator_index];
      if (!v) continue;
      lastSigned.set(v.pub_key, Math.max(lastSigned.get(v.pub_key) || 0, x));
      signedCount.set(v.pub_key, (signedCount.get(v.pub_key) || 0) + 1);
    }
  });
  const proposals = new Map();
  const chain = await rpc('blockchain', { max_height: top });
  for (const x of chain.headers) proposals.set(x.proposer, (proposals.get(x.proposer) || 0) + 1);
  const bodyRows = current.validators.map((v, i) => {
    const last = lastSigned.get(v.pub_key);
    const signed = signedCount.get(v.pub_key) || 0;
    const live = last !== undefined && top - last <= 2;
    return h('tr', {},
      h('td', { class: 'num' }, i),
      h('td', {}, account(v.address, v.address)),
      h('td', { class: 'num' }, amount(v.power)),
      h('td', { class: 'num' }, `${((100 * v.power) / current.total_power).toFixed(1)}%`),
      h('td', {}, last ? block(last) : h('span', { class: 'muted' }, `not in the last ${heights.length}`)),
      h('td', { class: 'num' }, `${signed} / ${heights.length}`),
      h('td', { class: 'num' }, proposals.get(v.address) || 0),
      h('td', {}, live ? badge('signing', 'ok') : badge('missing', 'failed')));
  });
  replace(main,
    h('h1', {}, 'Validators'),
    h('p', { class: 'muted' }, `Set for height ${current.height}: ${current.validators.length} validator${current.validators.length === 1 ? '' : 's'}, total power ${amount(current.total_power)}. `,
      `Signatures counted from the commits of blocks ${heights[heights.length - 1] ?? '—'} to ${top}.`),
    table(['#', 'Address', 'Power', 'Share', 'Last signed', 'Signed', 'Proposed', 'Liveness'], bodyRows, 'No validators.'));
}

// --- routing -------------------------------------------------------------------------------

const ROUTES = [
  [/^$/, (token) => home(token)],
  [/^block\/(\d+)$/, (token, m) => blockPage(token, Number(m[1]))],
  [/^tx\/([0-9a-fA-F]{64})$/, (token, m) => txPage(token, m[1].toLowerCase())],
  [/^account\/(cm1[0-9a-z]+)$/, (token, m) => accountPage(token, m[1])],
  [/^listing\/(\d+)$/, (token, m) => listingPage(token, Number(m[1]))],
  [/^order\/(\d+)$/, (token, m) => orderPage(token, Number(m[1]))],
  [/^validators$/, (token) => validatorsPage(token)],
];

async function render() {
  cleanup();
  cleanup = () => {};
  const token = ++renderToken;
  let route;
  try {
    route = decodeURIComponent(location.hash.replace(/^#\/?/, ''));
  } catch (err) {
    route = '\u0000';
  }
  document.querySelectorAll('header nav a').forEach((a) => a.classList.toggle('here', a.getAttribute('href') === `#/${route.split('/')[0]}`));
  const found = ROUTES.map(([pattern, page]) => [route.match(pattern), page]).find(([m]) => m);
  if (!found) {
    replace(main, h('h1', {}, 'Not found'), h('p', {}, 'This page does not exist: ', h('code', {}, route)), link([], 'Back to the latest blocks'));
    return;
  }
  main.setAttribute('aria-busy', 'true');
  try {
    await found[1](token, found[0]);
  } catch (err) {
    if (token !== renderToken) return;
    const notFound = err instanceof RpcError && err.code === -32001;
    replace(main, h('div', { class: 'error' },
      h('h1', {}, notFound ? 'Not found' : 'Something went wrong'),
      h('p', {}, err.message || String(err)),
      link([], 'Back to the latest blocks')));
  } finally {
    if (token === renderToken) main.removeAttribute('aria-busy');
  }
}

async function search(text) {
  const q = text.trim();
  let m;
  if (/^\d+$/.test(q)) return `#/block/${Number(q)}`;
  if ((m = q.match(/^(?:0x)?([0-9a-fA-F]{64})$/))) {
    const hash = m[1].toLowerCase();
    try { await rpc('tx', { hash }); return `#/tx/${hash}`; } catch (err) { /* maybe a block */ }
    try { const b = await rpc('block_by_hash', { hash }); return `#/block/${b.header.height}`; } catch (err) { return null; }
  }
  if (/^cm1[0-9a-z]+$/.test(q)) return `#/account/${q}`;
  if ((m = q.match(/^(listing|order|block|l|o|b)\s*#?\s*(\d+)$/i))) {
    const kind = { l: 'listing', o: 'order', b: 'block' }[m[1].toLowerCase()] || m[1].toLowerCase();
    return `#/${kind}/${Number(m[2])}`;
  }
  return null;
}

document.getElementById('search').addEventListener('submit', async (event) => {
  event.preventDefault();
  const input = document.getElementById('q');
  const target = await search(input.value);
  if (target) {
    input.value = '';
    location.hash = target;
  } else {
    cleanup();
    ++renderToken;
    replace(main, h('div', { class: 'error' }, h('h1', {}, 'Nothing found'),
      h('p', {}, 'No block, tx, account, listing or order matches ', h('code', {}, input.value), '.')));
  }
});

const liveBadge = document.getElementById('live');
onMode((mode) => {
  const text = { websocket: 'live · websocket', polling: 'live · polling', offline: 'node unreachable', connecting: 'connecting…' }[mode];
  liveBadge.className = `live ${mode === 'offline' || mode === 'connecting' ? 'off' : 'on'}`;
  replace(liveBadge, text);
  liveBadge.setAttribute('data-mode', mode);
});
onHeight((height) => liveBadge.setAttribute('title', `Latest block ${height}`));

window.addEventListener('hashchange', render);
startLive();
render();
