'use strict';
// Loads src/preload.js against a stand-in `electron` module (no Electron binary needed).
const test = require('node:test');
const assert = require('node:assert/strict');
const IPC = require('../src/ipc');

function loadPreload() {
  const exposed = {};
  const listeners = new Map();
  const invoked = [];
  const fake = {
    contextBridge: { exposeInMainWorld: (key, api) => { exposed[key] = api; } },
    ipcRenderer: {
      on: (channel, fn) => listeners.set(fn, channel),
      removeListener: (channel, fn) => listeners.get(fn) === channel && listeners.delete(fn),
      invoke: async (channel) => { invoked.push(channel); return `reply to ${channel}`; },
    },
  };
  const electronPath = require.resolve('electron');
  require.cache[electronPath] = { id: electronPath, filename: electronPath, loaded: true, exports: fake };
  delete require.cache[require.resolve('../src/preload')];
  require('../src/preload');
  return { exposed, listeners, invoked };
}

test('exposes exactly the documented API as window.kitchntabs', () => {
  const { exposed } = loadPreload();
  assert.deepEqual(Object.keys(exposed), ['kitchntabs']);
  assert.deepEqual(Object.keys(exposed.kitchntabs).sort(), ['getServiceStatus', 'localWsUrl', 'onServiceStatus']);
});

test('invokes the channels main.js handles', async () => {
  const { exposed, invoked } = loadPreload();
  assert.equal(await exposed.kitchntabs.getServiceStatus(), `reply to ${IPC.GET_SERVICE_STATUS}`);
  assert.equal(await exposed.kitchntabs.localWsUrl(), `reply to ${IPC.LOCAL_WS_URL}`);
  assert.deepEqual(invoked, [IPC.GET_SERVICE_STATUS, IPC.LOCAL_WS_URL]);
});

test('onServiceStatus passes snapshots (not IPC events) and can unsubscribe', () => {
  const { exposed, listeners } = loadPreload();
  const got = [];
  const unsubscribe = exposed.kitchntabs.onServiceStatus((s) => got.push(s));
  const [[listener, channel]] = listeners;
  assert.equal(channel, IPC.SERVICE_STATUS);
  listener({ sender: 'ipc event' }, { name: 'kt_service', state: 'running' });
  assert.deepEqual(got, [{ name: 'kt_service', state: 'running' }]);
  unsubscribe();
  assert.equal(listeners.size, 0);
});
