'use strict';
const { test, describe, before, after } = require('node:test');
const assert = require('node:assert/strict');
const http = require('node:http');
const path = require('node:path');
const { spawn } = require('node:child_process');
const {
  ConfigError, configFromEnv, createHealthServer, createServer, drain, drainAll, traceIdOf,
} = require('../server.js');

const SERVER_JS = path.join(__dirname, '..', 'server.js');

/** Starts a server on an ephemeral loopback port; returns {url, logs, server}. */
async function start(env) {
  const config = { ...configFromEnv(env), host: '127.0.0.1', port: 0 };
  const logs = [];
  const server = createServer(config, (line) => logs.push(JSON.parse(line)));
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address();
  return { server, logs, url: `http://127.0.0.1:${port}` };
}

function get(url, headers = {}, method = 'GET') {
  return new Promise((resolve, reject) => {
    const req = http.request(url, { method, headers, agent: false }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (c) => { body += c; });
      res.on('end', () => resolve({ status: res.statusCode, headers: res.headers, body }));
    });
    req.on('error', reject);
    req.end();
  });
}

const stop = (server) => new Promise((resolve) => server.close(resolve));

describe('version 1', () => {
  let srv;
  before(async () => {
    srv = await start({ POD_NAME: 'pod-a', AVAILABILITY_ZONE: 'eu-west-1a' });
  });
  after(() => stop(srv.server));

  test('GET / answers with service, version, pod and zone from env', async () => {
    const res = await get(srv.url + '/');
    assert.equal(res.status, 200);
    assert.match(res.headers['content-type'], /application\/json/);
    const body = JSON.parse(res.body);
    assert.deepEqual(body, {
      service: 'nodejs',
      version: '1',
      message: 'Hello from the Node.js backend',
      pod: 'pod-a',
      zone: 'eu-west-1a',
    });
    assert.doesNotMatch(body.message, /Canary/);
  });

  test('/health is 200 {"status":"ok"}', async () => {
    const res = await get(srv.url + '/health');
    assert.equal(res.status, 200);
    assert.deepEqual(JSON.parse(res.body), { status: 'ok' });
  });

  test('unknown path is a JSON 404', async () => {
    const res = await get(srv.url + '/nope?x=1');
    assert.equal(res.status, 404);
    assert.equal(JSON.parse(res.body).error, 'not found');
  });

  test('other methods on / are 405', async () => {
    const res = await get(srv.url + '/', {}, 'POST');
    assert.equal(res.status, 405);
    assert.equal(res.headers.allow, 'GET, HEAD');
  });

  test('one JSON log line per request with trace ids', async () => {
    const before = srv.logs.length;
    await get(srv.url + '/?q=1', {
      'X-Amzn-Trace-Id': 'Root=1-5759e988-bd862e3fe1be46a994272793;Sampled=1',
      traceparent: '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01',
    });
    assert.equal(srv.logs.length, before + 1);
    const line = srv.logs.at(-1);
    assert.equal(line.method, 'GET');
    assert.equal(line.path, '/');
    assert.equal(line.status, 200);
    assert.equal(typeof line.duration_ms, 'number');
    assert.ok(!Number.isNaN(Date.parse(line.time)));
    assert.equal(line.trace_id, '1-5759e988-bd862e3fe1be46a994272793');
    assert.equal(line.traceparent, '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01');
  });
});

describe('canary (APP_VERSION=2)', () => {
  let srv;
  before(async () => { srv = await start({ APP_VERSION: '2' }); });
  after(() => stop(srv.server));

  test('marks itself as version 2 and Canary', async () => {
    const body = JSON.parse((await get(srv.url + '/')).body);
    assert.equal(body.version, '2');
    assert.match(body.message, /Canary/);
    assert.equal(body.zone, 'unknown');
    assert.ok(body.pod.length > 0, 'pod falls back to the hostname');
  });
});

describe('RESPONSE_DELAY_MS and draining', () => {
  test('delays / but not /health', async () => {
    const srv = await start({ RESPONSE_DELAY_MS: '250' });
    try {
      let t0 = Date.now();
      assert.equal((await get(srv.url + '/health')).status, 200);
      assert.ok(Date.now() - t0 < 200);
      t0 = Date.now();
      assert.equal((await get(srv.url + '/')).status, 200);
      assert.ok(Date.now() - t0 >= 240, 'response was delayed');
    } finally {
      await stop(srv.server);
    }
  });

  test('drain finishes an in-flight request, then refuses new ones', async () => {
    const srv = await start({ RESPONSE_DELAY_MS: '300' });
    const inflight = get(srv.url + '/');
    await new Promise((r) => setTimeout(r, 50));
    const forced = await new Promise((resolve) => drain(srv.server, 5000, resolve));
    assert.equal(forced, false);
    assert.equal((await inflight).status, 200);
    await assert.rejects(get(srv.url + '/health'), /ECONNREFUSED/);
  });
});

describe('FAIL_EVERY', () => {
  test('every Nth GET / answers 503; /health never fails', async () => {
    const srv = await start({ FAIL_EVERY: '2' });
    try {
      const statuses = [];
      for (let i = 0; i < 6; i += 1) {
        statuses.push((await get(srv.url + '/')).status);
        assert.equal((await get(srv.url + '/health')).status, 200);
      }
      assert.deepEqual(statuses, [200, 503, 200, 503, 200, 503]);
      assert.equal(srv.logs.filter((l) => l.status === 503).length, 3);
    } finally {
      await stop(srv.server);
    }
  });

  test('FAIL_EVERY=1 fails every request; unset or invalid fails none', async () => {
    assert.equal(configFromEnv({}).failEvery, 0);
    assert.equal(configFromEnv({ FAIL_EVERY: 'x' }).failEvery, 0);
    const srv = await start({ FAIL_EVERY: '1' });
    try {
      const res = await get(srv.url + '/');
      assert.equal(res.status, 503);
      assert.equal(JSON.parse(res.body).error, 'injected failure');
      assert.equal((await get(srv.url + '/')).status, 503);
    } finally {
      await stop(srv.server);
    }
  });
});

test('traceIdOf falls back to traceparent, then null', () => {
  assert.equal(traceIdOf({ traceparent: '00-abc-def-01' }), 'abc');
  assert.equal(traceIdOf({}), null);
});

describe('HEALTH_PORT', () => {
  test('unset or empty means no extra listener; a number is read; == PORT or junk is refused', () => {
    assert.equal(configFromEnv({}).healthPort, null);
    assert.equal(configFromEnv({ HEALTH_PORT: '' }).healthPort, null);
    assert.equal(configFromEnv({ HEALTH_PORT: '3001' }).healthPort, 3001);
    assert.throws(() => configFromEnv({ HEALTH_PORT: '3000' }), ConfigError);
    assert.throws(() => configFromEnv({ PORT: '8080', HEALTH_PORT: '8080' }), /must differ from PORT/);
    for (const bad of ['abc', '0', '70000', '30x']) {
      assert.throws(() => configFromEnv({ HEALTH_PORT: bad }), ConfigError, bad);
    }
  });

  test('the health listener serves /health only, never the application', async () => {
    const health = createHealthServer();
    await new Promise((resolve) => health.listen(0, '127.0.0.1', resolve));
    const url = `http://127.0.0.1:${health.address().port}`;
    try {
      const res = await get(url + '/health');
      assert.equal(res.status, 200);
      assert.deepEqual(JSON.parse(res.body), { status: 'ok' });
      assert.equal((await get(url + '/health', {}, 'HEAD')).status, 200);
      assert.equal((await get(url + '/health', {}, 'POST')).status, 405);
      for (const p of ['/', '/?x=1', '/nope', '/health/x']) {
        const other = await get(url + p);
        assert.equal(other.status, 404, p);
        assert.equal(JSON.parse(other.body).error, 'not found');
      }
    } finally {
      await stop(health);
    }
  });

  test('drainAll closes both listeners', async () => {
    const srv = await start({});
    const health = createHealthServer();
    await new Promise((resolve) => health.listen(0, '127.0.0.1', resolve));
    const healthUrl = `http://127.0.0.1:${health.address().port}`;
    const forced = await new Promise((resolve) => drainAll([srv.server, health], 5000, resolve));
    assert.equal(forced, false);
    await assert.rejects(get(srv.url + '/health'), /ECONNREFUSED/);
    await assert.rejects(get(healthUrl + '/health'), /ECONNREFUSED/);
  });
});

/** Runs server.js as a process; resolves when it logs 'listening' for `count` listeners. */
function spawnServer(env, count) {
  const child = spawn(process.execPath, [SERVER_JS], {
    env: { ...process.env, BIND_ADDRESS: '127.0.0.1', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const out = { stdout: '', stderr: '' };
  child.stdout.on('data', (c) => { out.stdout += c; });
  child.stderr.on('data', (c) => { out.stderr += c; });
  const exited = new Promise((resolve) => child.on('exit', (code) => resolve(code)));
  const ready = new Promise((resolve, reject) => {
    const check = () => {
      const listening = out.stdout.split('\n').filter((l) => l.includes('"event":"listening"'));
      if (listening.length >= count) resolve();
    };
    child.stdout.on('data', check);
    exited.then((code) => reject(new Error(`exited ${code}: ${out.stderr}`)));
  });
  return { child, out, exited, ready };
}

/** A port free on 127.0.0.1 right now. */
async function freePort() {
  const probe = http.createServer();
  await new Promise((resolve) => probe.listen(0, '127.0.0.1', resolve));
  const { port } = probe.address();
  await stop(probe);
  return port;
}

describe('HEALTH_PORT in the real process', () => {
  test('serves /health on HEALTH_PORT, 404 for /, and both close on SIGTERM', async () => {
    const port = await freePort();
    let healthPort = await freePort();
    while (healthPort === port) healthPort = await freePort();
    const proc = spawnServer({ PORT: String(port), HEALTH_PORT: String(healthPort) }, 2);
    try {
      await proc.ready;
      const health = await get(`http://127.0.0.1:${healthPort}/health`);
      assert.equal(health.status, 200);
      assert.deepEqual(JSON.parse(health.body), { status: 'ok' });
      assert.equal((await get(`http://127.0.0.1:${healthPort}/`)).status, 404);
      assert.equal((await get(`http://127.0.0.1:${port}/`)).status, 200);
      proc.child.kill('SIGTERM');
      assert.equal(await proc.exited, 0);
      await assert.rejects(get(`http://127.0.0.1:${healthPort}/health`), /ECONNREFUSED/);
      const logged = proc.out.stdout.trim().split('\n').map((l) => JSON.parse(l));
      assert.ok(logged.some((l) => l.listener === 'health' && l.port === healthPort), 'health listener announced');
      assert.ok(!logged.some((l) => l.path === '/health'), 'probe requests are not logged');
      assert.ok(logged.some((l) => l.path === '/'), 'application requests are logged');
    } finally {
      proc.child.kill('SIGKILL');
    }
  });

  test('HEALTH_PORT == PORT is refused at startup', async () => {
    const port = await freePort();
    const proc = spawnServer({ PORT: String(port), HEALTH_PORT: String(port) }, 1);
    proc.ready.catch(() => {});
    const code = await proc.exited;
    assert.notEqual(code, 0);
    assert.match(proc.out.stderr, /HEALTH_PORT \(\d+\) must differ from PORT/);
    assert.equal(proc.out.stdout, '', 'nothing listened');
  });
});
