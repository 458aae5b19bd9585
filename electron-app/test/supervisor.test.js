'use strict';
const test = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const path = require('node:path');
const { setTimeout: sleep } = require('node:timers/promises');
const { Supervisor } = require('../src/supervisor');

const FAKE = path.join(__dirname, 'fixtures', 'fake-service');
const fake = (name, ...flags) => ({ name, command: process.execPath, args: [FAKE, ...flags] });

// Small delays so the whole file runs in a few seconds.
const FAST = { backoffInitialMs: 40, backoffMaxMs: 160, stableAfterMs: 10_000, stopTimeoutMs: 300 };

/** A supervisor that is stopped when the test ends, even if an assertion failed first. */
function supervise(t, specs, options) {
  const sup = new Supervisor(specs, options);
  t.after(() => sup.stopAll());
  return sup;
}

/** Resolve with the first status snapshot of `name` matching `pred` (current state included). */
function waitForStatus(sup, name, pred, timeoutMs = 5000) {
  const now = sup.status().find((s) => s.name === name);
  if (pred(now)) return Promise.resolve(now);
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      sup.off('status', onStatus);
      reject(new Error(`timed out waiting for ${name}; last status ${JSON.stringify(sup.status())}`));
    }, timeoutMs);
    function onStatus(s) {
      if (s.name !== name || !pred(s)) return;
      clearTimeout(timer);
      sup.off('status', onStatus);
      resolve(s);
    }
    sup.on('status', onStatus);
  });
}

/** Resolve with the first captured line of `name` matching `re`. */
function waitForLine(sup, name, re, timeoutMs = 5000) {
  const seen = sup.lines(name).find((l) => re.test(l.text));
  if (seen) return Promise.resolve(seen);
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`timed out waiting for ${re} from ${name}`)), timeoutMs);
    sup.on('line', function onLine(l) {
      if (l.name !== name || !re.test(l.text)) return;
      clearTimeout(timer);
      sup.off('line', onLine);
      resolve(l);
    });
  });
}

/** Record every status event with the time it arrived. */
function record(sup) {
  const events = [];
  sup.on('status', (s) => events.push({ ...s, t: performance.now() }));
  return events;
}

/** Alive and not a zombie (a killed orphan can linger as one until it is reaped). */
function isAlive(pid) {
  try {
    return !/^\d+ \(.*\) Z/.test(fs.readFileSync(`/proc/${pid}/stat`, 'utf8'));
  } catch {
    return false;
  }
}

test('starts a service, captures stdout and stderr lines, stops it cleanly', async (t) => {
  const sup = supervise(t, [fake('kt_service')], FAST);
  const events = record(sup);
  sup.start();
  const running = await waitForStatus(sup, 'kt_service', (s) => s.state === 'running');
  assert.equal(typeof running.pid, 'number');
  await waitForLine(sup, 'kt_service', /^ready /);
  await waitForLine(sup, 'kt_service', /warming up/);
  assert.deepEqual(sup.lines('kt_service').map((l) => l.stream).sort(), ['stderr', 'stdout']);
  assert.equal(sup.lines('kt_service').find((l) => l.stream === 'stdout').text, `ready ${running.pid}`);

  await sup.stopAll();
  const [status] = sup.status();
  assert.equal(status.state, 'stopped');
  assert.equal(status.pid, null);
  assert.equal(status.lastExit.code, 0);
  assert.deepEqual(events.map((e) => e.state), ['starting', 'running', 'stopped']);
});

test('restarts a crashing service with growing backoff and keeps only the last lines', async (t) => {
  const options = { ...FAST, backoffInitialMs: 30, backoffMaxMs: 240, maxLines: 3 };
  const sup = supervise(t, [fake('print_service', '--exit-after', '0', '--code', '3')], options);
  const events = record(sup);
  sup.start();
  await waitForStatus(sup, 'print_service', (s) => s.restarts >= 5 && s.state === 'backoff');
  await sup.stopAll();

  const backoffs = events.filter((e) => e.state === 'backoff');
  assert.deepEqual(backoffs.slice(0, 6).map((e) => e.backoffMs), [30, 60, 120, 240, 240, 240]);
  assert.deepEqual(backoffs[0].lastExit, { code: 3, signal: null, at: backoffs[0].lastExit.at });
  // Measured from each crash to the next start: at least the announced delay, and growing.
  const gaps = backoffs.slice(0, 5).map((b) => events.find((e) => e.t > b.t && e.state === 'starting').t - b.t);
  gaps.forEach((gap, i) => assert.ok(gap >= backoffs[i].backoffMs - 2, `gap ${i} = ${gap} ms`));
  assert.ok(gaps[3] > gaps[0], `delays must grow: ${gaps.map(Math.round)}`);
  assert.equal(sup.lines('print_service').length, 3);
});

test('a run longer than stableAfterMs resets the backoff delay', async (t) => {
  const sup = supervise(t, [fake('tts_service', '--exit-after', '250', '--code', '1')],
    { ...FAST, stableAfterMs: 100 });
  const events = record(sup);
  sup.start();
  await waitForStatus(sup, 'tts_service', (s) => s.restarts >= 2 && s.state === 'backoff');
  await sup.stopAll();
  assert.deepEqual(events.filter((e) => e.state === 'backoff').map((e) => e.backoffMs), [40, 40, 40]);
});

test('a service that exits 0 is left stopped', async (t) => {
  const sup = supervise(t, [fake('kt_service', '--exit-after', '50', '--code', '0')], FAST);
  sup.start();
  const stopped = await waitForStatus(sup, 'kt_service', (s) => s.state === 'stopped' && s.lastExit);
  await sleep(FAST.backoffInitialMs * 3);
  assert.equal(sup.status()[0].state, 'stopped');
  assert.equal(stopped.restarts, 0);
});

test('stopAll cancels a pending restart', async (t) => {
  const sup = supervise(t, [fake('kt_service', '--exit-after', '0')], { ...FAST, backoffInitialMs: 200 });
  const events = record(sup);
  sup.start();
  await waitForStatus(sup, 'kt_service', (s) => s.state === 'backoff');
  await sup.stopAll();
  await sleep(300);
  assert.equal(sup.status()[0].state, 'stopped');
  assert.equal(sup.status()[0].restarts, 0);
  assert.deepEqual(events.map((e) => e.state), ['starting', 'running', 'backoff', 'stopped']);
  assert.throws(() => sup.start(), /create a new Supervisor/);
});

test('stopAll SIGKILLs a service (and its children) that ignore SIGTERM, then does not restart it', async (t) => {
  const sup = supervise(t, [fake('kt_service', '--ignore-sigterm', '--grandchild')], FAST);
  sup.start();
  const { pid } = await waitForStatus(sup, 'kt_service', (s) => s.state === 'running');
  await waitForLine(sup, 'kt_service', new RegExp(`^ready ${pid}$`));
  const grandchild = Number((await waitForLine(sup, 'kt_service', new RegExp(`^ready (?!${pid}$)`))).text.split(' ')[1]);

  const t0 = performance.now();
  await sup.stopAll();
  const elapsed = performance.now() - t0;
  assert.ok(elapsed >= FAST.stopTimeoutMs - 5, `stopAll took ${elapsed} ms, expected the SIGTERM grace period first`);
  assert.equal(sup.status()[0].lastExit.signal, 'SIGKILL');

  await sleep(FAST.backoffInitialMs * 3); // longer than any restart delay
  assert.equal(sup.status()[0].state, 'stopped');
  assert.equal(sup.status()[0].restarts, 0);
  assert.ok(!isAlive(grandchild), `grandchild ${grandchild} survived stopAll`);
});

test('a missing executable is reported as failed with what to do', async (t) => {
  const sup = supervise(t, [{ name: 'kt_service', command: '/nonexistent/kt_service', args: [], cwd: '/' }], FAST);
  sup.start();
  const failed = await waitForStatus(sup, 'kt_service', (s) => s.state === 'failed');
  assert.match(failed.error, /kt_service could not start: .*cargo xtask dist/);
  await sleep(FAST.backoffInitialMs * 2);
  assert.equal(sup.status()[0].state, 'failed');
  await sup.stopAll();
});

test('status lists services in spec order; lines() rejects unknown names', () => {
  const sup = new Supervisor([fake('a'), fake('b')], FAST);
  assert.deepEqual(sup.status().map((s) => [s.name, s.state, s.restarts]), [['a', 'stopped', 0], ['b', 'stopped', 0]]);
  assert.throws(() => sup.lines('c'), /unknown service "c"; known: a, b/);
});
