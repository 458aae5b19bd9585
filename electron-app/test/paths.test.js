'use strict';
const test = require('node:test');
const assert = require('node:assert/strict');
const path = require('node:path');
const { SERVICES, serviceCommand, devServiceRoot } = require('../src/paths');

const APP = '/work/repo/electron-app';
const ROOT = '/work/repo/python-service';
const VENV_PYTHON = `${ROOT}/.venv/bin/python`;
const dev = (exists) => ({ packaged: false, resourcesPath: '/unused', appPath: APP, platform: 'linux', exists });

test('the three services', () => {
  assert.deepEqual(SERVICES, ['kt_service', 'print_service', 'tts_service']);
});

test('packaged: the one-file executable under resources/python-service', () => {
  for (const name of SERVICES) {
    const where = { packaged: true, resourcesPath: '/opt/KitchnTabs/resources', appPath: '/opt/KitchnTabs/resources/app.asar', platform: 'linux' };
    assert.deepEqual(serviceCommand(name, where), {
      command: `/opt/KitchnTabs/resources/python-service/${name}`,
      args: [],
      cwd: '/opt/KitchnTabs/resources/python-service',
    });
  }
});

test('packaged on Windows: .exe', () => {
  const where = { packaged: true, resourcesPath: 'C:\\KT\\resources', appPath: '', platform: 'win32' };
  assert.equal(path.basename(serviceCommand('tts_service', where).command), 'tts_service.exe');
});

test('development: the venv python runs src/<name>.py when the venv exists', () => {
  for (const name of SERVICES) {
    assert.deepEqual(serviceCommand(name, dev((p) => p === VENV_PYTHON)), {
      command: VENV_PYTHON,
      args: ['-u', `${ROOT}/src/${name}.py`],
      cwd: ROOT,
    });
  }
});

test('development without a venv: python3 from PATH', () => {
  const checked = [];
  const { command, args, cwd } = serviceCommand('print_service', dev((p) => { checked.push(p); return false; }));
  assert.deepEqual(checked, [VENV_PYTHON]);
  assert.equal(command, 'python3');
  assert.deepEqual(args, ['-u', `${ROOT}/src/print_service.py`]);
  assert.equal(cwd, ROOT);
});

test('development: python-service is the sibling of the app folder', () => {
  assert.equal(devServiceRoot(APP), ROOT);
  assert.equal(devServiceRoot(`${APP}/`), ROOT);
});

test('an unknown service name is an error that lists the known ones', () => {
  assert.throws(() => serviceCommand('kt_servce', dev(() => false)),
    /unknown service "kt_servce"; expected one of kt_service, print_service, tts_service/);
});
