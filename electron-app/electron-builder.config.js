'use strict';
// electron-builder configuration. Builds run offline: the Electron version comes from the
// installed package and the Electron binaries from KT_ELECTRON_DIST, so nothing is downloaded.

const path = require('node:path');
const { execFileSync } = require('node:child_process');

const REPO_ROOT = path.resolve(__dirname, '..');

function installedElectronVersion() {
  try {
    return require('electron/package.json').version;
  } catch (err) {
    throw new Error(`cannot read electron/package.json (${err.code}); run ` +
      '`ELECTRON_SKIP_BINARY_DOWNLOAD=1 pnpm install` in electron-app/ first');
  }
}

/**
 * Puts the Python services into the unpacked app. The logic lives in the Rust tool; this only
 * hands over electron-builder's context. `arch` is electron-builder's Arch enum number
 * (x64=1, armv7l=2, arm64=3); `platform` tells darwin-arm64 from linux arm64.
 */
async function afterPack(context) {
  // `cargo xtask dist` sets this when it runs afterpack itself, after electron-builder.
  if (process.env.KT_SKIP_AFTERPACK === '1') return;
  const args = ['afterpack',
    '--app-out-dir', context.appOutDir,
    '--arch', String(context.arch),
    '--platform', context.electronPlatformName];
  // KT_XTASK: an already built xtask binary (tests, CI), instead of `cargo xtask`.
  const [program, argv] = process.env.KT_XTASK
    ? [process.env.KT_XTASK, ['--root', REPO_ROOT, ...args]]
    : ['cargo', ['xtask', ...args]];
  try {
    execFileSync(program, argv, { stdio: 'inherit', cwd: REPO_ROOT });
  } catch (err) {
    const why = err.code === 'ENOENT'
      ? `${program} is not on PATH; install Rust (https://rustup.rs)`
      : `it exited with ${err.status ?? err.signal}; see its output above`;
    throw new Error(`afterPack: \`${program} ${argv.join(' ')}\` failed: ${why}. ` +
      'Build with `cargo xtask dist`, which runs every step in order.');
  }
}

const electronDist = process.env.KT_ELECTRON_DIST;

/** @type {import('electron-builder').Configuration} */
module.exports = {
  appId: 'com.kitchntabs.terminal',
  productName: 'KitchnTabs',
  directories: { output: 'release' },
  files: ['src/**', 'renderer/**', 'package.json'],
  asar: true,
  electronVersion: installedElectronVersion(),
  // Relative paths are taken from the caller's working directory, as a shell user expects.
  ...(electronDist ? { electronDist: path.resolve(electronDist) } : {}),
  // No native modules: skip @electron/rebuild, which would fetch Electron headers.
  npmRebuild: false,
  linux: {
    target: 'dir',
    executableName: 'kitchntabs',
    category: 'Office',
  },
  afterPack,
};
