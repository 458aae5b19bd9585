'use strict';
// Kitchen display: service states from the main process (window.kitchntabs, see preload.js) and
// orders from kt_service's local WebSocket. All text goes in via textContent: order notes are
// typed by people and must never be parsed as HTML.

const MAX_ORDERS = 30;
const RECONNECT_MIN_MS = 500;
const RECONNECT_MAX_MS = 10000;

const api = window.kitchntabs;
const services = new Map();

function el(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = String(text);
  return node;
}

function setBadge(id, text, state) {
  const badge = document.getElementById(id);
  badge.textContent = text;
  badge.dataset.state = state;
}

// ---------------------------------------------------------------- services

function describeExit(lastExit) {
  if (!lastExit) return '—';
  return lastExit.signal ? lastExit.signal : `code ${lastExit.code}`;
}

function describeState(s) {
  if (s.state === 'backoff') return `restarting in ${Math.ceil(s.backoffMs / 1000)} s`;
  return s.state;
}

function renderServices() {
  const rows = [...services.values()].map((s) => {
    const row = el('tr');
    row.dataset.state = s.state;
    if (s.error) row.title = s.error;
    row.append(el('td', '', s.name), el('td', 'state', describeState(s)), el('td', '', s.pid ?? '—'),
      el('td', '', s.restarts), el('td', '', describeExit(s.lastExit)));
    return row;
  });
  document.getElementById('services').replaceChildren(...rows);
}

function showServiceStatus(snapshot) {
  services.set(snapshot.name, snapshot);
  renderServices();
}

// ---------------------------------------------------------------- orders

function orderElement(order) {
  const item = el('li', 'order');
  const head = el('div', 'order-head');
  head.append(el('span', 'table', `Table ${order.table ?? '?'}`), el('span', 'order-id', `#${order.id ?? '?'}`),
    el('time', '', new Date().toLocaleTimeString()));
  const lines = el('ul', 'items');
  for (const line of Array.isArray(order.items) ? order.items : []) {
    const entry = el('li');
    entry.append(el('span', 'qty', `${line.qty ?? 1}×`), el('span', 'name', line.name ?? '?'));
    if (line.notes) entry.append(el('div', 'notes', line.notes));
    lines.append(entry);
  }
  item.append(head, lines);
  return item;
}

function addOrder(order) {
  const list = document.getElementById('orders');
  list.prepend(orderElement(order));
  while (list.children.length > MAX_ORDERS) list.lastElementChild.remove();
  document.getElementById('no-orders').hidden = true;
}

function handleMessage(data) {
  let message;
  try {
    message = JSON.parse(data);
  } catch {
    console.warn('ignoring a non-JSON message from kt_service:', data);
    return;
  }
  if (message.type === 'status') {
    setBadge('kitchen', message.connected ? `Kitchen server: connected (${message.server})`
      : `Kitchen server: disconnected (${message.server})`, message.connected ? 'ok' : 'bad');
  } else if (message.type === 'order' && message.order && typeof message.order === 'object') {
    addOrder(message.order);
  }
}

// kt_service starts after this page and restarts at times: keep reconnecting, backing off.
function connect(url) {
  let attempt = 0;
  const open = () => {
    const socket = new WebSocket(url);
    socket.addEventListener('open', () => {
      attempt = 0;
      setBadge('link', 'Local link: connected', 'ok');
    });
    socket.addEventListener('message', (event) => handleMessage(event.data));
    socket.addEventListener('close', () => {
      const delay = Math.min(RECONNECT_MIN_MS * 2 ** attempt, RECONNECT_MAX_MS);
      attempt += 1;
      setBadge('link', `Local link: down, retrying in ${Math.ceil(delay / 1000)} s`, 'bad');
      setBadge('kitchen', 'Kitchen server: unknown', 'unknown');
      setTimeout(open, delay);
    });
  };
  open();
}

api.onServiceStatus(showServiceStatus);
// Snapshots fetched here may be older than events that arrived meanwhile: events win.
api.getServiceStatus().then((list) => list.filter((s) => !services.has(s.name)).forEach(showServiceStatus));
api.localWsUrl().then(connect);
