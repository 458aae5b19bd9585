'use strict';
// Starts the Python services and keeps them running. Plain Node (no electron import) so it is
// tested with real child processes.
//
// States: starting -> running -> (crash) backoff -> starting ...
//         running -> (exit 0) stopped        any -> (stopAll) stopped
//         starting -> (cannot spawn) failed
//
// Events: 'status' (snapshot of one service after any change), 'line' ({name, stream, text}).

const { EventEmitter } = require('node:events');
const { spawn } = require('node:child_process');
const readline = require('node:readline');

const DEFAULTS = Object.freeze({
  backoffInitialMs: 1000, // first restart delay; doubles per consecutive crash
  backoffMaxMs: 30000,
  stableAfterMs: 60000, // a run at least this long resets the delay to backoffInitialMs
  stopTimeoutMs: 5000, // SIGTERM grace period before SIGKILL
  maxLines: 200, // output lines kept per service
});

// Each service gets its own process group (POSIX) and signals go to the whole group: a
// PyInstaller one-file executable is a bootloader with the real Python process as its child,
// and SIGKILL to the bootloader alone would leave that child running.
const USE_PROCESS_GROUPS = process.platform !== 'win32';

class Supervisor extends EventEmitter {
  /**
   * @param {Array<{name: string, command: string, args?: string[], cwd?: string,
   *                env?: NodeJS.ProcessEnv}>} specs
   * @param {Partial<typeof DEFAULTS>} [options]
   */
  constructor(specs, options = {}) {
    super();
    this.options = { ...DEFAULTS, ...options };
    this.services = new Map(specs.map((spec) => [spec.name, {
      spec,
      state: 'stopped',
      child: null,
      pid: null,
      restarts: 0,
      lastExit: null,
      error: null,
      backoffMs: null,
      attempt: 0, // consecutive crashes, drives the backoff delay
      startedAt: 0,
      restartTimer: null,
      killTimer: null,
      exited: null, // promise resolved when the current child is gone
      lines: [],
    }]));
    this.stopping = null;
  }

  /** Start every service that is not already running or waiting to restart. */
  start() {
    if (this.stopping) throw new Error('this supervisor was stopped; create a new Supervisor to start again');
    for (const svc of this.services.values()) {
      if (!svc.child && !svc.restartTimer) this.#launch(svc);
    }
  }

  /** Snapshots of every service, in spec order. */
  status() {
    return [...this.services.values()].map(snapshot);
  }

  /** The last `maxLines` output lines of a service: [{stream, text}]. */
  lines(name) {
    return [...this.#service(name).lines];
  }

  /**
   * SIGTERM every service, SIGKILL those still running after stopTimeoutMs, cancel pending
   * restarts. Resolves when every process has exited. Safe to call more than once.
   */
  stopAll() {
    if (!this.stopping) this.stopping = this.#stopAll();
    return this.stopping;
  }

  async #stopAll() {
    const exits = [];
    for (const svc of this.services.values()) {
      if (svc.restartTimer) {
        clearTimeout(svc.restartTimer);
        svc.restartTimer = null;
        this.#setState(svc, 'stopped');
      }
      if (svc.child) {
        exits.push(svc.exited);
        this.#signal(svc, 'SIGTERM');
        svc.killTimer = setTimeout(() => this.#signal(svc, 'SIGKILL'), this.options.stopTimeoutMs);
      }
    }
    await Promise.all(exits);
  }

  #service(name) {
    const svc = this.services.get(name);
    if (!svc) throw new Error(`unknown service "${name}"; known: ${[...this.services.keys()].join(', ')}`);
    return svc;
  }

  #launch(svc) {
    const { command, args = [], cwd, env } = svc.spec;
    const child = spawn(command, args, { cwd, env, stdio: ['ignore', 'pipe', 'pipe'], detached: USE_PROCESS_GROUPS });
    svc.child = child;
    svc.pid = child.pid ?? null;
    svc.error = null;
    svc.startedAt = Date.now();
    svc.exited = new Promise((resolve) => {
      child.once('exit', (code, signal) => { this.#onExit(svc, child, code, signal); resolve(); });
      child.once('error', (err) => {
        // Without a pid the process never started (missing file, not executable, bad cwd);
        // later 'error' events (failed kill) need no action, the 'exit' handler covers them.
        if (child.pid !== undefined || svc.child !== child) return;
        svc.child = null;
        svc.error = spawnErrorMessage(svc.spec, err);
        this.#setState(svc, 'failed');
        resolve();
      });
    });
    child.once('spawn', () => {
      if (svc.child === child) this.#setState(svc, 'running');
    });
    for (const [stream, input] of [['stdout', child.stdout], ['stderr', child.stderr]]) {
      readline.createInterface({ input, crlfDelay: Infinity })
        .on('line', (text) => this.#pushLine(svc, stream, text));
    }
    this.#setState(svc, 'starting');
  }

  #onExit(svc, child, code, signal) {
    if (svc.child !== child) return;
    clearTimeout(svc.killTimer);
    svc.child = null;
    svc.pid = null;
    svc.lastExit = { code, signal, at: new Date().toISOString() };
    // Exit code 0 is a deliberate stop (e.g. systemd sent SIGTERM to the whole unit): restarting
    // would fight whoever stopped it. Non-zero codes and signals are crashes.
    if (this.stopping || code === 0) {
      this.#setState(svc, 'stopped');
      return;
    }
    if (Date.now() - svc.startedAt >= this.options.stableAfterMs) svc.attempt = 0;
    svc.backoffMs = Math.min(this.options.backoffInitialMs * 2 ** svc.attempt, this.options.backoffMaxMs);
    svc.attempt += 1;
    svc.restartTimer = setTimeout(() => {
      svc.restartTimer = null;
      svc.restarts += 1;
      this.#launch(svc);
    }, svc.backoffMs);
    this.#setState(svc, 'backoff');
  }

  #signal(svc, signal) {
    const pid = svc.child?.pid;
    if (pid === undefined) return;
    try {
      process.kill(USE_PROCESS_GROUPS ? -pid : pid, signal);
    } catch (err) {
      if (err.code !== 'ESRCH') throw err; // ESRCH: already gone, its 'exit' event is on the way
    }
  }

  #pushLine(svc, stream, text) {
    svc.lines.push({ stream, text });
    if (svc.lines.length > this.options.maxLines) svc.lines.shift();
    this.emit('line', { name: svc.spec.name, stream, text });
  }

  #setState(svc, state) {
    svc.state = state;
    this.emit('status', snapshot(svc));
  }
}

function snapshot(svc) {
  return {
    name: svc.spec.name,
    state: svc.state,
    pid: svc.pid,
    restarts: svc.restarts,
    lastExit: svc.lastExit,
    backoffMs: svc.state === 'backoff' ? svc.backoffMs : null,
    error: svc.error,
  };
}

function spawnErrorMessage({ name, command, cwd }, err) {
  const hint = {
    ENOENT: `${command} (or its working directory ${cwd}) does not exist. Packaged: the build did ` +
      'not inject the services; rebuild with `cargo xtask dist`. Development: install python3 ' +
      'or create python-service/.venv.',
    EACCES: `${command} is not executable; chmod +x it or rebuild with \`cargo xtask dist\`.`,
  }[err.code] ?? err.message;
  return `${name} could not start: ${hint}`;
}

module.exports = { Supervisor, DEFAULTS };
