'use strict';
const test = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const path = require('node:path');
const { DEFAULT_PORT, localWsPort, localWsUrl } = require('../src/local-ws');

const config = (text) => () => text;

test('packaged: the default port', () => {
  assert.equal(DEFAULT_PORT, 8770);
  assert.equal(localWsPort({ packaged: true, serviceRoot: '/nonexistent', env: {} }), 8770);
});

test('KT_LOCAL_WS_PORT overrides, packaged or not', () => {
  const env = { KT_LOCAL_WS_PORT: '9001' };
  assert.equal(localWsPort({ packaged: true, serviceRoot: '/x', env }), 9001);
  assert.equal(localWsPort({ packaged: false, serviceRoot: '/x', env, readFile: config('LOCAL_WS_PORT: 8770\n') }), 9001);
});

test('a bad KT_LOCAL_WS_PORT is an error naming it', () => {
  for (const bad of ['abc', '0', '70000', '80 80']) {
    assert.throws(() => localWsPort({ packaged: true, serviceRoot: '/x', env: { KT_LOCAL_WS_PORT: bad } }),
      /KT_LOCAL_WS_PORT must be a TCP port 1-65535/);
  }
});

test('development: LOCAL_WS_PORT from python-service/config.yaml', () => {
  const read = [];
  const readFile = (p) => { read.push(p); return 'LOCAL_WS_HOST: "127.0.0.1"\nLOCAL_WS_PORT: 8780   # comment\nPRINT_SERVICE_PORT: 8771\n'; };
  assert.equal(localWsPort({ packaged: false, serviceRoot: '/repo/python-service', env: {}, readFile }), 8780);
  assert.deepEqual(read, [path.join('/repo/python-service', 'config.yaml')]);
});

test('development: the checkout\'s own config.yaml is readable', (t) => {
  const serviceRoot = path.join(__dirname, '..', '..', 'python-service');
  if (!fs.existsSync(path.join(serviceRoot, 'config.yaml'))) return t.skip('no python-service/config.yaml here');
  assert.ok(Number.isInteger(localWsPort({ packaged: false, serviceRoot, env: {} })));
});

test('development: a missing config or key says what to do', () => {
  assert.throws(() => localWsPort({ packaged: false, serviceRoot: '/nonexistent', env: {} }),
    /cannot read \/nonexistent\/config.yaml \(ENOENT\); .*KT_LOCAL_WS_PORT/);
  assert.throws(() => localWsPort({ packaged: false, serviceRoot: '/r', env: {}, readFile: config('WS_PORT: "8000"\n') }),
    /has no LOCAL_WS_PORT: <port> line/);
});

test('the URL is on the loopback interface', () => {
  assert.equal(localWsUrl(8770), 'ws://127.0.0.1:8770');
});
