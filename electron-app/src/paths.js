'use strict';
// Where each Python service's executable lives, packaged or in development.
// Pure: every input (including the file-existence check) is passed in, so tests need no app.

const path = require('node:path');
const fs = require('node:fs');

const SERVICES = Object.freeze(['kt_service', 'print_service', 'tts_service']);

/** python-service/ next to electron-app/ in a checkout (development only). */
function devServiceRoot(appPath) {
  return path.resolve(appPath, '..', 'python-service');
}

/** The venv interpreter when python-service/.venv exists, else the system python. */
function devPython(serviceRoot, platform, exists) {
  const venvPython = platform === 'win32'
    ? path.join(serviceRoot, '.venv', 'Scripts', 'python.exe')
    : path.join(serviceRoot, '.venv', 'bin', 'python');
  if (exists(venvPython)) return venvPython;
  return platform === 'win32' ? 'python' : 'python3';
}

/**
 * How to start one service.
 * @param {string} name one of SERVICES
 * @param {{packaged: boolean, resourcesPath: string, appPath: string, platform: string,
 *          exists?: (p: string) => boolean}} ctx
 * @returns {{command: string, args: string[], cwd: string}}
 */
function serviceCommand(name, { packaged, resourcesPath, appPath, platform, exists = fs.existsSync }) {
  if (!SERVICES.includes(name)) {
    throw new Error(`unknown service "${name}"; expected one of ${SERVICES.join(', ')}`);
  }
  if (packaged) {
    // One-file executables that `cargo xtask afterpack` puts next to app.asar.
    const dir = path.join(resourcesPath, 'python-service');
    const exe = platform === 'win32' ? `${name}.exe` : name;
    return { command: path.join(dir, exe), args: [], cwd: dir };
  }
  const root = devServiceRoot(appPath);
  // -u: unbuffered stdout, so the supervisor sees print() lines as they happen.
  return { command: devPython(root, platform, exists), args: ['-u', path.join(root, 'src', `${name}.py`)], cwd: root };
}

module.exports = { SERVICES, serviceCommand, devServiceRoot };
