'use strict';
// Electron main process: the kitchen display window and the supervisor that runs the Python
// services. Quitting waits until every service has exited.

const path = require('node:path');
const { app, BrowserWindow, dialog, ipcMain } = require('electron');
const IPC = require('./ipc');
const { localWsPort, localWsUrl } = require('./local-ws');
const { SERVICES, serviceCommand, devServiceRoot } = require('./paths');
const { Supervisor } = require('./supervisor');

let mainWindow = null;
let supervisor = null;
let servicesStopped = false;

function createWindow() {
  const win = new BrowserWindow({
    width: 1280,
    height: 800,
    title: 'KitchnTabs',
    backgroundColor: '#14161a',
    show: false,
    webPreferences: {
      preload: path.join(__dirname, 'preload.js'),
      contextIsolation: true,
      nodeIntegration: false,
      sandbox: true,
    },
  });
  win.removeMenu();
  // The UI is one local page: never navigate away or open windows (say, a link in an order note).
  win.webContents.setWindowOpenHandler(() => ({ action: 'deny' }));
  win.webContents.on('will-navigate', (event) => event.preventDefault());
  win.once('ready-to-show', () => win.show());
  win.loadFile(path.join(__dirname, '..', 'renderer', 'index.html'));
  return win;
}

function serviceSpecs(wsPort) {
  const where = {
    packaged: app.isPackaged,
    resourcesPath: process.resourcesPath,
    appPath: app.getAppPath(),
    platform: process.platform,
  };
  return SERVICES.map((name) => {
    const { command, args, cwd } = serviceCommand(name, where);
    // kt_service listens on the port the renderer is told, whatever its bundled config says.
    const extra = name === 'kt_service' ? ['--local-port', String(wsPort)] : [];
    return { name, command, args: [...args, ...extra], cwd };
  });
}

function sendToWindow(channel, payload) {
  if (mainWindow && !mainWindow.isDestroyed()) mainWindow.webContents.send(channel, payload);
}

function start() {
  let wsUrl;
  let specs;
  try {
    const port = localWsPort({ packaged: app.isPackaged, serviceRoot: devServiceRoot(app.getAppPath()) });
    wsUrl = localWsUrl(port);
    specs = serviceSpecs(port);
  } catch (err) {
    dialog.showErrorBox('KitchnTabs cannot start', err.message);
    app.exit(1);
    return;
  }

  supervisor = new Supervisor(specs);
  // Service output and state changes go to stdout/stderr: the journal on a kiosk.
  supervisor.on('line', ({ name, stream, text }) => (stream === 'stderr' ? console.error : console.log)(`[${name}] ${text}`));
  supervisor.on('status', (s) => {
    console.log(`[supervisor] ${s.name}: ${s.state}${s.pid ? ` pid ${s.pid}` : ''}` +
      `${s.backoffMs ? `, restart in ${s.backoffMs} ms` : ''}${s.error ? `: ${s.error}` : ''}`);
    sendToWindow(IPC.SERVICE_STATUS, s);
  });
  ipcMain.handle(IPC.GET_SERVICE_STATUS, () => supervisor.status());
  ipcMain.handle(IPC.LOCAL_WS_URL, () => wsUrl);

  mainWindow = createWindow();
  supervisor.start();
}

if (!app.requestSingleInstanceLock()) {
  // Another instance already runs the services; a second set would fight over their ports.
  app.quit();
} else {
  app.on('second-instance', () => {
    if (!mainWindow || mainWindow.isDestroyed()) return;
    if (mainWindow.isMinimized()) mainWindow.restore();
    mainWindow.focus();
  });

  app.on('window-all-closed', () => app.quit());

  app.on('before-quit', (event) => {
    if (!supervisor || servicesStopped) return;
    event.preventDefault();
    supervisor.stopAll().finally(() => {
      servicesStopped = true;
      app.quit();
    });
  });

  // Electron exits on these without 'before-quit'. The services run in their own process groups,
  // so neither Ctrl+C in a terminal nor a plain kill reaches them: quit through stopAll().
  for (const signal of ['SIGINT', 'SIGTERM']) process.on(signal, () => app.quit());

  app.whenReady().then(start);
}
