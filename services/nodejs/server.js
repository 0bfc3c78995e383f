'use strict';
// Node.js backend of the App Mesh workshop (and its canary: APP_VERSION=2).
// Standard library only. One JSON log line per request on stdout.
//
// Fault-injection knobs (environment), for the mesh's resilience tests:
//   RESPONSE_DELAY_MS=N  answer GET / after N ms (a "hung" backend: N far above the route timeout)
//   FAIL_EVERY=N         every Nth GET / answers 503 (N=2: half of them, N=1: all); /health is
//                        never affected, so health checks pass while requests fail
//
// Listeners (environment):
//   PORT=3000            the application (in the mesh, Envoy intercepts this port and
//                        requires mTLS client certificates)
//   BIND_ADDRESS=0.0.0.0 the address both listeners bind
//   HEALTH_PORT=N        optional; unset or empty: no extra listener. When set, a second
//                        listener on BIND_ADDRESS:N answers only GET/HEAD /health (200, the
//                        same JSON as /health on PORT) and 404 for every other path, never
//                        the application routes: the pod annotation
//                        appmesh.k8s.aws/ports: "3000" keeps Envoy off this port, so kubelet
//                        probes reach it without a client certificate. It must differ from
//                        PORT (else the service logs an error and exits 2 at startup). Its
//                        requests are not logged (probe noise). It closes with PORT on SIGTERM.

const http = require('node:http');
const os = require('node:os');

const DRAIN_TIMEOUT_MS = 10000;
const EXIT_CONFIG_ERROR = 2;

/** A setting in the environment the service refuses to start with. */
class ConfigError extends Error {}

/** HEALTH_PORT: null when unset or empty; throws ConfigError when invalid or equal to PORT. */
function healthPortFromEnv(env, port) {
  const raw = (env.HEALTH_PORT || '').trim();
  if (raw === '') return null;
  const healthPort = /^\d+$/.test(raw) ? Number(raw) : NaN;
  if (!(healthPort >= 1 && healthPort <= 65535)) {
    throw new ConfigError(`HEALTH_PORT must be a TCP port (1-65535), got ${JSON.stringify(env.HEALTH_PORT)}`);
  }
  if (healthPort === port) {
    throw new ConfigError(`HEALTH_PORT (${healthPort}) must differ from PORT (${port})`);
  }
  return healthPort;
}

/** Reads the service configuration from an environment object (throws ConfigError). */
function configFromEnv(env = process.env) {
  const port = Number.parseInt(env.PORT || '3000', 10);
  const delay = Number.parseInt(env.RESPONSE_DELAY_MS || '0', 10);
  const failEvery = Number.parseInt(env.FAIL_EVERY || '0', 10);
  return {
    port,
    healthPort: healthPortFromEnv(env, port),
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

/**
 * Builds the HEALTH_PORT server (not listening yet): /health and nothing else,
 * so the port that bypasses the mesh's mTLS never exposes the application.
 * No request log: it only sees kubelet probes.
 */
function createHealthServer() {
  const server = http.createServer((req, res) => {
    const path = (req.url || '/').split('?')[0];
    if (path !== '/health') {
      sendJson(res, 404, { error: 'not found', path });
      return;
    }
    routeHealth(req, res);
  });
  server.keepAliveTimeout = 5000;
  return server;
}

/** GET/HEAD /health on either listener. */
function routeHealth(req, res) {
  if (req.method !== 'GET' && req.method !== 'HEAD') {
    sendJson(res, 405, { error: 'method not allowed' }, { Allow: 'GET, HEAD' });
    return;
  }
  sendJson(res, 200, { status: 'ok' });
}

function route(config, req, res, faults = { served: 0 }) {
  const path = (req.url || '/').split('?')[0];
  const known = path === '/' || path === '/health';
  if (!known) {
    sendJson(res, 404, { error: 'not found', path });
    return;
  }
  if (path === '/health') {
    routeHealth(req, res);
    return;
  }
  if (req.method !== 'GET' && req.method !== 'HEAD') {
    sendJson(res, 405, { error: 'method not allowed' }, { Allow: 'GET, HEAD' });
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

/** Drains every server at once; done(forced) when all are closed. */
function drainAll(servers, timeoutMs, done) {
  let pending = servers.length;
  let anyForced = false;
  for (const server of servers) {
    drain(server, timeoutMs, (forced) => {
      anyForced = anyForced || forced;
      pending -= 1;
      if (pending === 0) done(anyForced);
    });
  }
}

function logEvent(config, fields) {
  process.stdout.write(JSON.stringify({
    time: new Date().toISOString(), service: config.service, ...fields,
  }) + '\n');
}

function main() {
  let config;
  try {
    config = configFromEnv();
  } catch (err) {
    if (!(err instanceof ConfigError)) throw err;
    process.stderr.write(JSON.stringify({
      time: new Date().toISOString(), service: process.env.SERVICE_NAME || 'nodejs',
      event: 'config_error', error: err.message,
    }) + '\n');
    process.exit(EXIT_CONFIG_ERROR);
  }
  const server = createServer(config);
  const servers = [server];
  const healthServer = config.healthPort === null ? null : createHealthServer();
  if (healthServer) servers.push(healthServer);
  const shutdown = (signal) => {
    logEvent(config, { event: 'shutdown', signal });
    drainAll(servers, DRAIN_TIMEOUT_MS, (forced) => process.exit(forced ? 1 : 0));
  };
  process.once('SIGTERM', () => shutdown('SIGTERM'));
  process.once('SIGINT', () => shutdown('SIGINT'));
  server.listen(config.port, config.host, () => {
    const addr = server.address();
    logEvent(config, {
      event: 'listening', address: addr.address, port: addr.port,
      version: config.version, health_port: config.healthPort,
    });
  });
  if (healthServer) {
    healthServer.listen(config.healthPort, config.host, () => {
      const addr = healthServer.address();
      logEvent(config, { event: 'listening', listener: 'health', address: addr.address, port: addr.port });
    });
  }
}

module.exports = {
  ConfigError, configFromEnv, createHealthServer, createServer, drain, drainAll, greeting, traceIdOf,
};

if (require.main === module) {
  main();
}
