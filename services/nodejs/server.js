'use strict';
// Node.js backend of the App Mesh workshop (and its canary: APP_VERSION=2).
// Standard library only. One JSON log line per request on stdout.
//
// Fault-injection knobs (environment), for the mesh's resilience tests:
//   RESPONSE_DELAY_MS=N  answer GET / after N ms (a "hung" backend: N far above the route timeout)
//   FAIL_EVERY=N         every Nth GET / answers 503 (N=2: half of them, N=1: all); /health is
//                        never affected, so health checks pass while requests fail

const http = require('node:http');
const os = require('node:os');

const DRAIN_TIMEOUT_MS = 10000;

/** Reads the service configuration from an environment object. */
function configFromEnv(env = process.env) {
  const delay = Number.parseInt(env.RESPONSE_DELAY_MS || '0', 10);
  const failEvery = Number.parseInt(env.FAIL_EVERY || '0', 10);
  return {
    port: Number.parseInt(env.PORT || '3000', 10),
    host: env.BIND_ADDRESS || '0.0.0.0',
    service: env.SERVICE_NAME || 'nodejs',
    version: env.APP_VERSION || '1',
    pod: env.POD_NAME || os.hostname(),
    zone: env.AVAILABILITY_ZONE || 'unknown',
    responseDelayMs: Number.isFinite(delay) && delay > 0 ? delay : 0,
    failEvery: Number.isFinite(failEvery) && failEvery > 0 ? failEvery : 0,
  };
}

/** Extracts a trace id: the Root of X-Amzn-Trace-Id, else the W3C trace-id. */
function traceIdOf(headers) {
  const amzn = headers['x-amzn-trace-id'];
  if (typeof amzn === 'string') {
    const root = /(?:^|;)\s*Root=([^;]+)/.exec(amzn);
    return root ? root[1].trim() : amzn;
  }
  const tp = headers.traceparent;
  if (typeof tp === 'string') {
    const parts = tp.trim().split('-');
    return parts.length >= 4 ? parts[1] : tp;
  }
  return null;
}

function sendJson(res, status, body, extraHeaders = {}) {
  const payload = JSON.stringify(body);
  res.writeHead(status, {
    'Content-Type': 'application/json; charset=utf-8',
    'Content-Length': Buffer.byteLength(payload),
    ...extraHeaders,
  });
  res.end(res.req.method === 'HEAD' ? undefined : payload);
}

function greeting(config) {
  const canary = config.version !== '1';
  return {
    service: config.service,
    version: config.version,
    message: canary
      ? `Hello from the Node.js backend - Canary v${config.version}`
      : 'Hello from the Node.js backend',
    pod: config.pod,
    zone: config.zone,
  };
}

/**
 * Builds the HTTP server (not listening yet). `log` receives one line per
 * request; tests pass their own sink.
 */
function createServer(config, log = (line) => process.stdout.write(line + '\n')) {
  const faults = { served: 0 };
  const server = http.createServer((req, res) => {
    const started = process.hrtime.bigint();
    const path = (req.url || '/').split('?')[0];
    res.on('finish', () => {
      const durationMs = Number(process.hrtime.bigint() - started) / 1e6;
      log(JSON.stringify({
        time: new Date().toISOString(),
        service: config.service,
        method: req.method,
        path,
        status: res.statusCode,
        duration_ms: Math.round(durationMs * 1000) / 1000,
        trace_id: traceIdOf(req.headers),
        x_amzn_trace_id: req.headers['x-amzn-trace-id'] || null,
        traceparent: req.headers.traceparent || null,
      }));
    });
    route(config, req, res, faults);
  });
  server.keepAliveTimeout = 5000;
  return server;
}

function route(config, req, res, faults = { served: 0 }) {
  const path = (req.url || '/').split('?')[0];
  const known = path === '/' || path === '/health';
  if (!known) {
    sendJson(res, 404, { error: 'not found', path });
    return;
  }
  if (req.method !== 'GET' && req.method !== 'HEAD') {
    sendJson(res, 405, { error: 'method not allowed' }, { Allow: 'GET, HEAD' });
    return;
  }
  if (path === '/health') {
    sendJson(res, 200, { status: 'ok' });
    return;
  }
  faults.served += 1;
  if (config.failEvery > 0 && faults.served % config.failEvery === 0) {
    sendJson(res, 503, { error: 'injected failure', fail_every: config.failEvery });
    return;
  }
  const answer = () => sendJson(res, 200, greeting(config));
  if (config.responseDelayMs > 0) {
    setTimeout(answer, config.responseDelayMs);
  } else {
    answer();
  }
}

/**
 * Stops accepting, lets in-flight requests finish, then calls done(forced).
 * Idle keep-alive connections are closed at once; after timeoutMs the rest
 * are cut so a stuck client cannot hold the pod forever.
 */
function drain(server, timeoutMs, done) {
  let finished = false;
  const timer = setTimeout(() => {
    if (finished) return;
    finished = true;
    server.closeAllConnections();
    done(true);
  }, timeoutMs);
  timer.unref();
  server.close(() => {
    if (finished) return;
    finished = true;
    clearTimeout(timer);
    done(false);
  });
  server.closeIdleConnections();
}

function main() {
  const config = configFromEnv();
  const server = createServer(config);
  const shutdown = (signal) => {
    process.stdout.write(JSON.stringify({
      time: new Date().toISOString(), service: config.service,
      event: 'shutdown', signal,
    }) + '\n');
    drain(server, DRAIN_TIMEOUT_MS, (forced) => process.exit(forced ? 1 : 0));
  };
  process.once('SIGTERM', () => shutdown('SIGTERM'));
  process.once('SIGINT', () => shutdown('SIGINT'));
  server.listen(config.port, config.host, () => {
    const addr = server.address();
    process.stdout.write(JSON.stringify({
      time: new Date().toISOString(), service: config.service,
      event: 'listening', address: addr.address, port: addr.port,
      version: config.version,
    }) + '\n');
  });
}

module.exports = { configFromEnv, createServer, drain, greeting, traceIdOf };

if (require.main === module) {
  main();
}
