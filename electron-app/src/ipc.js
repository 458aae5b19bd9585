'use strict';
// IPC channel names between main and preload. The sandboxed preload cannot require this file,
// so it repeats them; test/preload.test.js checks that both agree.

module.exports = Object.freeze({
  SERVICE_STATUS: 'services:status', // main -> renderer: one service's snapshot after a change
  GET_SERVICE_STATUS: 'services:get-status', // renderer -> main (invoke): every snapshot
  LOCAL_WS_URL: 'local-ws:url', // renderer -> main (invoke): kt_service's WebSocket URL
});
