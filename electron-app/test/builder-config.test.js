'use strict';
const test = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');

const CONFIG = path.join(__dirname, '..', 'electron-builder.config.js');
const REPO_ROOT = path.resolve(__dirname, '..', '..');

/** Set environment variables (undefined = unset); returns a function restoring the old values. */
function setEnv(env) {
  const saved = Object.fromEntries(Object.keys(env).map((k) => [k, process.env[k]]));
  const apply = (vars) => {
    for (const [k, v] of Object.entries(vars)) {
      if (v === undefined) delete process.env[k];
      else process.env[k] = v;
    }
  };
  apply(env);
  return () => apply(saved);
}

/** Load the config fresh, as electron-builder would with this environment. */
function loadConfig(env) {
  const restore = setEnv(env);
  try {
    delete require.cache[require.resolve(CONFIG)];
    return require(CONFIG);
  } finally {
    restore();
  }
}

async function withEnv(env, fn) {
  const restore = setEnv(env);
  try {
    return await fn();
  } finally {
    restore();
  }
}

/** A directory holding a fake `cargo` that records its cwd and argv, one per line, then exits `code`. */
function fakeCargo(t, code = 0) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'kt-fake-cargo-'));
  t.after(() => fs.rmSync(dir, { recursive: true, force: true }));
  const record = path.join(dir, 'argv.txt');
  fs.writeFileSync(path.join(dir, 'cargo'), `#!/bin/sh\npwd > '${record}'\nprintf '%s\\n' "$@" >> '${record}'\nexit ${code}\n`, { mode: 0o755 });
  return { dir, record, PATH: `${dir}${path.delimiter}${process.env.PATH}` };
}

const CONTEXT = { appOutDir: '/tmp/out/linux-armv7l-unpacked', arch: 2, electronPlatformName: 'linux' };

test('static settings', () => {
  const config = loadConfig({ KT_ELECTRON_DIST: undefined });
  assert.equal(config.appId, 'com.kitchntabs.terminal');
  assert.equal(config.productName, 'KitchnTabs');
  assert.deepEqual(config.directories, { output: 'release' });
  assert.deepEqual(config.files, ['src/**', 'renderer/**', 'package.json']);
  assert.equal(config.asar, true);
  assert.equal(config.linux.target, 'dir');
  assert.equal(config.linux.executableName, 'kitchntabs');
  assert.equal(typeof config.linux.category, 'string');
  assert.equal(config.electronVersion, require('electron/package.json').version);
  assert.match(config.electronVersion, /^43\.\d+\.\d+$/);
});

test('electronDist comes from KT_ELECTRON_DIST, absolute, and is absent without it', () => {
  assert.ok(!('electronDist' in loadConfig({ KT_ELECTRON_DIST: undefined })));
  assert.ok(!('electronDist' in loadConfig({ KT_ELECTRON_DIST: '' })));
  assert.equal(loadConfig({ KT_ELECTRON_DIST: '/opt/electron-dist' }).electronDist, '/opt/electron-dist');
  assert.equal(loadConfig({ KT_ELECTRON_DIST: 'rel/dist' }).electronDist, path.resolve('rel/dist'));
});

test('afterPack is an async function of the context', () => {
  const { afterPack } = loadConfig({});
  assert.equal(typeof afterPack, 'function');
  assert.equal(afterPack.constructor.name, 'AsyncFunction');
  assert.equal(afterPack.length, 1);
});

test('afterPack runs `cargo xtask afterpack` from the repo root', async (t) => {
  const cargo = fakeCargo(t);
  const { afterPack } = loadConfig({});
  await withEnv({ PATH: cargo.PATH, KT_SKIP_AFTERPACK: '', KT_XTASK: '' }, () => afterPack(CONTEXT));
  assert.deepEqual(fs.readFileSync(cargo.record, 'utf8').trim().split('\n'), [
    REPO_ROOT,
    'xtask', 'afterpack',
    '--app-out-dir', '/tmp/out/linux-armv7l-unpacked',
    '--arch', '2',
    '--platform', 'linux',
  ]);
});

test('afterPack runs KT_XTASK, a built xtask, with --root when it is set', async (t) => {
  const cargo = fakeCargo(t);
  const { afterPack } = loadConfig({});
  await withEnv({ KT_XTASK: path.join(cargo.dir, 'cargo'), KT_SKIP_AFTERPACK: '' }, () => afterPack(CONTEXT));
  assert.deepEqual(fs.readFileSync(cargo.record, 'utf8').trim().split('\n'), [
    REPO_ROOT,
    '--root', REPO_ROOT, 'afterpack',
    '--app-out-dir', '/tmp/out/linux-armv7l-unpacked',
    '--arch', '2',
    '--platform', 'linux',
  ]);
});

test('afterPack does nothing with KT_SKIP_AFTERPACK=1', async (t) => {
  const cargo = fakeCargo(t);
  const { afterPack } = loadConfig({});
  await withEnv({ PATH: cargo.PATH, KT_SKIP_AFTERPACK: '1' }, () => afterPack(CONTEXT));
  assert.ok(!fs.existsSync(cargo.record));
});

test('afterPack fails the build when cargo fails, saying what to do', async (t) => {
  const cargo = fakeCargo(t, 3);
  const { afterPack } = loadConfig({});
  await withEnv({ PATH: cargo.PATH, KT_SKIP_AFTERPACK: '' }, () =>
    assert.rejects(afterPack(CONTEXT), /cargo xtask afterpack .* failed: it exited with 3.*cargo xtask dist/));
});

test('afterPack reports a missing cargo', async () => {
  const { afterPack } = loadConfig({});
  await withEnv({ PATH: '/nonexistent', KT_SKIP_AFTERPACK: '' }, () =>
    assert.rejects(afterPack(CONTEXT), /cargo is not on PATH/));
});
