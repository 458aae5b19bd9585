'use strict';
// Runs src/main.js against a stand-in `electron` module, with the fake service standing in for
// the Python interpreter of a temporary checkout. No Electron binary needed.
const test = require('node:test');
const assert = require('node:assert/strict');
const { EventEmitter } = require('node:events');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const IPC = require('../src/ipc');

const FAKE_SERVICE = path.join(__dirname, 'fixtures', 'fake-service');
const PORT = 18770;

/** electron-app/ and python-service/ (config.yaml, a .venv whose python is the fake service). */
function fakeCheckout(t) {
  const root = fs.mkdtempSync(path.join(os.tmpdir(), 'kt-checkout-'));
  t.after(() => fs.rmSync(root, { recursive: true, force: true }));
  const bin = path.join(root, 'python-service', '.venv', 'bin');
  fs.mkdirSync(bin, { recursive: true });
  fs.mkdirSync(path.join(root, 'electron-app'));
  fs.writeFileSync(path.join(root, 'python-service', 'config.yaml'), `LOCAL_WS_PORT: ${PORT}\n`);
  fs.writeFileSync(path.join(bin, 'python'), `#!/bin/sh\nexec '${process.execPath}' '${FAKE_SERVICE}' "$@"\n`, { mode: 0o755 });
  return path.join(root, 'electron-app');
}

function fakeElectron({ appPath, gotLock = true }) {
  const windows = [];
  const handlers = new Map();
  const app = Object.assign(new EventEmitter(), {
    isPackaged: false,
    quits: [],
    getAppPath: () => appPath,
    requestSingleInstanceLock: () => gotLock,
    whenReady: () => Promise.resolve(),
    // Like Electron: 'before-quit' may cancel the quit.
    quit() {
      const event = { defaultPrevented: false, preventDefault() { this.defaultPrevented = true; } };
      app.emit('before-quit', event);
      app.quits.push(event.defaultPrevented ? 'prevented' : 'quit');
      app.emit('test:quit-attempt');
    },
    exit: (code) => { throw new Error(`app.exit(${code}) called`); },
  });
  class BrowserWindow {
    constructor(options) {
      this.options = options;
      this.sent = [];
      this.webContents = {
        send: (channel, payload) => this.sent.push([channel, payload]),
        setWindowOpenHandler: (fn) => { this.openHandler = fn; },
        on: () => {},
      };
      windows.push(this);
    }
    removeMenu() {}
    once() {}
    loadFile(file) { this.file = file; }
    isDestroyed() { return false; }
  }
  const ipcMain = { handle: (channel, fn) => handlers.set(channel, fn) };
  const dialog = { showErrorBox: (title, message) => { throw new Error(`${title}: ${message}`); } };
  return { app, BrowserWindow, ipcMain, dialog, windows, handlers };
}

function loadMain(fake) {
  const electronPath = require.resolve('electron');
  require.cache[electronPath] = { id: electronPath, filename: electronPath, loaded: true, exports: fake };
  delete require.cache[require.resolve('../src/main')];
  require('../src/main');
}

async function until(check, what, timeoutMs = 5000) {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

const cmdline = (pid) => fs.readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').filter(Boolean);

test('opens the window, runs the services, serves IPC, and quits only once they stopped', async (t) => {
  // main.js logs service output and state changes; keep the test report readable.
  t.mock.method(console, 'log', () => {});
  t.mock.method(console, 'error', () => {});
  const appPath = fakeCheckout(t);
  const electron = fakeElectron({ appPath });
  loadMain(electron);
  const getStatus = () => electron.handlers.get(IPC.GET_SERVICE_STATUS)();
  t.after(() => electron.app.quit()); // stops the services if an assertion fails first
  await until(() => electron.windows.length === 1, 'the window');

  const [win] = electron.windows;
  const prefs = win.options.webPreferences;
  assert.deepEqual([prefs.contextIsolation, prefs.nodeIntegration, prefs.sandbox], [true, false, true]);
  assert.ok(fs.existsSync(prefs.preload), prefs.preload);
  assert.ok(fs.existsSync(win.file), win.file);
  assert.deepEqual(win.openHandler(), { action: 'deny' });

  assert.equal(await electron.handlers.get(IPC.LOCAL_WS_URL)(), `ws://127.0.0.1:${PORT}`);
  await until(() => getStatus().every((s) => s.state === 'running'), 'every service running');
  assert.deepEqual(getStatus().map((s) => s.name), ['kt_service', 'print_service', 'tts_service']);
  assert.ok(win.sent.some(([channel, s]) => channel === IPC.SERVICE_STATUS && s.state === 'running'));

  const [kt, print] = getStatus();
  const serviceRoot = path.join(path.dirname(appPath), 'python-service');
  assert.deepEqual(cmdline(kt.pid).slice(-4),
    ['-u', path.join(serviceRoot, 'src', 'kt_service.py'), '--local-port', String(PORT)]);
  assert.deepEqual(cmdline(print.pid).slice(-2), ['-u', path.join(serviceRoot, 'src', 'print_service.py')]);

  const quitDone = new Promise((resolve) => electron.app.on('test:quit-attempt', () => {
    if (electron.app.quits.at(-1) === 'quit') resolve();
  }));
  electron.app.quit();
  assert.equal(electron.app.quits[0], 'prevented', 'the first quit must wait for the services');
  await quitDone;
  // SIGTERM may land before a service installs its handler: then it dies of the signal itself.
  assert.ok(getStatus().every((s) => s.state === 'stopped' && (s.lastExit.code === 0 || s.lastExit.signal === 'SIGTERM')),
    JSON.stringify(getStatus()));
});

test('a second instance quits at once and starts nothing', async () => {
  const electron = fakeElectron({ appPath: '/nonexistent/electron-app', gotLock: false });
  loadMain(electron);
  await new Promise((r) => setImmediate(r));
  assert.deepEqual(electron.app.quits, ['quit']);
  assert.equal(electron.windows.length, 0);
  assert.equal(electron.handlers.size, 0);
});
