'use strict';
// The renderer's only door to the main process. Runs sandboxed, where require() offers just
// 'electron' (and a few Node builtins): that is why the channel names are repeated from ipc.js.
// Only contextBridge and ipcRenderer are used, so it works the same with or without the
// Chromium sandbox (`--no-sandbox`).

const { contextBridge, ipcRenderer } = require('electron');

const SERVICE_STATUS = 'services:status';
const GET_SERVICE_STATUS = 'services:get-status';
const LOCAL_WS_URL = 'local-ws:url';

contextBridge.exposeInMainWorld('kitchntabs', {
  /** Call cb(snapshot) on every service status change; returns an unsubscribe function. */
  onServiceStatus(cb) {
    const listener = (_event, snapshot) => cb(snapshot);
    ipcRenderer.on(SERVICE_STATUS, listener);
    return () => ipcRenderer.removeListener(SERVICE_STATUS, listener);
  },
  /** Promise of every service's current snapshot. */
  getServiceStatus: () => ipcRenderer.invoke(GET_SERVICE_STATUS),
  /** Promise of kt_service's local WebSocket URL. */
  localWsUrl: () => ipcRenderer.invoke(LOCAL_WS_URL),
});
