'use strict';
// The port of kt_service's local WebSocket. The main process decides it and passes it to
// kt_service (--local-port), so the renderer and the service never disagree.

const fs = require('node:fs');
const path = require('node:path');

const DEFAULT_PORT = 8770;
const HOST = '127.0.0.1';

function parsePort(text, source) {
  const port = /^\d+$/.test(String(text).trim()) ? Number(text) : NaN;
  if (!(port >= 1 && port <= 65535)) {
    throw new Error(`${source} must be a TCP port 1-65535, got ${JSON.stringify(text)}`);
  }
  return port;
}

/**
 * KT_LOCAL_WS_PORT wins; otherwise packaged builds use the default and development reads
 * LOCAL_WS_PORT from python-service/config.yaml (the file the services read from source).
 * @param {{packaged: boolean, serviceRoot: string, env?: NodeJS.ProcessEnv,
 *          readFile?: (p: string) => string}} opts
 */
function localWsPort({ packaged, serviceRoot, env = process.env, readFile = (p) => fs.readFileSync(p, 'utf8') }) {
  if (env.KT_LOCAL_WS_PORT) return parsePort(env.KT_LOCAL_WS_PORT, 'KT_LOCAL_WS_PORT');
  if (packaged) return DEFAULT_PORT;
  const configPath = path.join(serviceRoot, 'config.yaml');
  let text;
  try {
    text = readFile(configPath);
  } catch (err) {
    throw new Error(`cannot read ${configPath} (${err.code || err.message}); ` +
      'create it from config.yaml in git or set KT_LOCAL_WS_PORT');
  }
  // A flat "KEY: value" file; a YAML parser dependency for one integer is not worth it.
  const match = /^LOCAL_WS_PORT:\s*"?(\d+)"?\s*(?:#.*)?$/m.exec(text);
  if (!match) throw new Error(`${configPath} has no LOCAL_WS_PORT: <port> line; add one or set KT_LOCAL_WS_PORT`);
  return parsePort(match[1], `LOCAL_WS_PORT in ${configPath}`);
}

function localWsUrl(port) {
  return `ws://${HOST}:${port}`;
}

module.exports = { DEFAULT_PORT, localWsPort, localWsUrl };
