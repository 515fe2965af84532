// JSON-RPC 2.0 over fetch to the node that served this page (same origin, POST /).

const MAX_BATCH = 60; // the node refuses batches above rpc.max_batch_requests (64 by default)
let nextId = 1;

export class RpcError extends Error {
  constructor(error) {
    super((error && error.message) || 'unknown error');
    this.code = error && error.code;
    this.data = error && error.data;
  }
}

async function post(body) {
  const response = await fetch('/', {
    method: 'POST',
    headers: { 'Content-Type': 'application/json' },
    body: JSON.stringify(body),
  });
  if (response.status === 204) return null;
  return response.json();
}

export async function rpc(method, params = {}) {
  const reply = await post({ jsonrpc: '2.0', id: nextId++, method, params });
  if (!reply || reply.error) throw new RpcError(reply && reply.error);
  return reply.result;
}

// calls: [[method, params], ...] -> results in order; a failed call yields an RpcError.
export async function batch(calls) {
  const results = [];
  for (let start = 0; start < calls.length; start += MAX_BATCH) {
    const chunk = calls.slice(start, start + MAX_BATCH);
    const body = chunk.map(([method, params], i) => ({ jsonrpc: '2.0', id: i, method, params: params || {} }));
    const replies = await post(body);
    const byId = new Map((Array.isArray(replies) ? replies : []).map((r) => [r.id, r]));
    chunk.forEach((_, i) => {
      const reply = byId.get(i);
      results.push(reply && 'result' in reply ? reply.result : new RpcError(reply && reply.error));
    });
  }
  return results;
}
