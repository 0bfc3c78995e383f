'use strict';
const { test, describe, before, after } = require('node:test');
const assert = require('node:assert/strict');
const http = require('node:http');
const { configFromEnv, createServer, drain, traceIdOf } = require('../server.js');

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
