// Tells subscribers the latest block height as it changes. Uses the node's WebSocket when
// it has one (`subscribe` with {"stream": "new_block"} on /websocket; each notification's
// params.result carries the height) and falls back to polling `status` every second
// otherwise, or while a dropped socket reconnects.

import { rpc } from './rpc.js';

const POLL_MS = 1000;
const listeners = new Set();
let height = 0;
let mode = 'connecting';
let modeListener = () => {};

export function onHeight(fn) {
  listeners.add(fn);
  return () => listeners.delete(fn);
}

export function currentHeight() {
  return height;
}

export function onMode(fn) {
  modeListener = fn;
  fn(mode);
}

function setMode(next) {
  if (next !== mode) { mode = next; modeListener(mode); }
}

function publish(next) {
  if (next > height) {
    height = next;
    for (const fn of [...listeners]) {
      try { fn(height); } catch (err) { console.error(err); }
    }
  }
}

async function pollOnce() {
  try {
    const status = await rpc('status');
    publish(status.sync_info.latest_block_height);
    if (mode !== 'websocket') setMode('polling');
  } catch (err) {
    if (mode !== 'websocket') setMode('offline');
  }
}

function blockHeightOf(message) {
  // Accept the shapes a new-block notification may take: {height}, {header: {height}},
  // {block: {header: {height}}}, possibly under params.result or result.data.
  const candidates = [message && message.params, message && message.result, message];
  for (const c of candidates) {
    for (const v of [c, c && c.result, c && c.data, c && c.data && c.data.value]) {
      if (!v || typeof v !== 'object') continue;
      const found = v.height ?? (v.header && v.header.height) ?? (v.block && v.block.header && v.block.header.height);
      if (Number.isInteger(found)) return found;
    }
  }
  return null;
}

function connectSocket() {
  let socket;
  try {
    const scheme = location.protocol === 'https:' ? 'wss:' : 'ws:';
    socket = new WebSocket(`${scheme}//${location.host}/websocket`);
  } catch (err) {
    return;
  }
  let opened = false;
  let refused = false;
  socket.addEventListener('open', () => {
    opened = true;
    socket.send(JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'subscribe', params: { stream: 'new_block' } }));
  });
  socket.addEventListener('message', (event) => {
    let message;
    try { message = JSON.parse(event.data); } catch (err) { return; }
    if (message && message.error) { refused = true; socket.close(); return; }
    const found = blockHeightOf(message);
    if (found !== null) { setMode('websocket'); publish(found); }
  });
  socket.addEventListener('close', () => {
    setMode('polling');
    // A node without a WebSocket never opens one: stay on polling. A dropped socket retries.
    if (opened && !refused) setTimeout(connectSocket, 3000);
  });
}

export function startLive() {
  pollOnce();
  setInterval(() => { if (mode !== 'websocket') pollOnce(); }, POLL_MS);
  connectSocket();
}
