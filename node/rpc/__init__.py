"""JSON-RPC 2.0: a sans-IO dispatcher (bytes in, bytes out) and a thin aiohttp server."""
