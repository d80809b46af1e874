// Live bay board: one EventSource, one tile per bay, texts from the message catalogue only.
"use strict";
const T = (key, args = {}) =>
  (window.MESSAGES[key] ?? key).replace(/\{(\w+)\}/g, (_, k) => args[k] ?? "");

const fmtBytes = (n) => {
  if (n == null) return "–";
  const units = ["B", "KB", "MB", "GB", "TB"];
  let i = 0;
  while (n >= 1000 && i < units.length - 1) { n /= 1000; i++; }
  return `${n.toFixed(i ? 1 : 0)} ${units[i]}`;
};

const board = document.getElementById("bays");
const tiles = new Map();

function tileFor(number) {
  if (!tiles.has(number)) {
    const node = document.getElementById("bay-tile").content.firstElementChild.cloneNode(true);
    node.id = `bay-${number}`;
    node.dataset.bay = number;
    tiles.set(number, node);
    const after = [...tiles.keys()].filter((n) => n > number).sort((a, b) => a - b)[0];
    board.insertBefore(node, after === undefined ? null : tiles.get(after));
  }
  return tiles.get(number);
}

function render(bay) {
  const el = tileFor(bay.number);
  el.dataset.state = bay.state;
  el.querySelector(".bay-no").textContent = T("bay.number", { n: bay.number });
  el.querySelector(".badge").textContent = T(`bay.state.${bay.state}`);
  const cam = bay.camera;
  el.querySelector(".camera").textContent = cam ? [cam.serial, cam.model].filter(Boolean).join(" · ") : T("bay.empty");
  const battery = el.querySelector(".battery");
  battery.hidden = bay.battery_pct == null;
  battery.querySelector("i").style.width = `${bay.battery_pct ?? 0}%`;
  battery.querySelector("span").textContent = bay.battery_pct == null ? "" : `${bay.battery_pct}%`;
  const free = el.querySelector(".free");
  free.hidden = bay.storage_free == null;
  free.querySelector("span").textContent = fmtBytes(bay.storage_free);
  const p = bay.progress;
  const prog = el.querySelector(".progress");
  prog.hidden = !p;
  if (p) {
    const pct = p.bytes_total ? Math.floor((100 * p.bytes_done) / p.bytes_total) : 100;
    prog.querySelector("i").style.width = `${pct}%`;
    prog.querySelector(".files").textContent =
      `${T("bay.files")} ${p.files_done}/${p.files_total} · ${fmtBytes(p.bytes_done)} / ${fmtBytes(p.bytes_total)} · ${pct}%`;
  }
  el.querySelector(".message").textContent = bay.message ? T(bay.message) : "";
  el.querySelector(".message").title = bay.detail || "";
}

function renderAlarms(alarms) {
  const list = document.getElementById("alarms");
  list.replaceChildren(...alarms.map((alarm) => {
    const item = document.createElement("li");
    item.dataset.key = alarm.key;
    item.textContent = T(alarm.message);
    item.title = alarm.detail;
    return item;
  }));
  list.hidden = alarms.length === 0;
}

const health = new Map();  // check -> latest result

function renderHealth(results) {
  results.forEach((r) => health.set(r.check, r));
  const section = document.getElementById("health");
  section.querySelector("ul").replaceChildren(...[...health.values()].map((r) => {
    const item = document.createElement("li");
    item.dataset.check = r.check;
    item.dataset.status = r.status;
    item.textContent = `${T(`health.${r.check}`)}: ${T(`health.status.${r.status}`)}`;
    item.title = r.message;  // technical detail for staff
    return item;
  }));
  section.hidden = health.size === 0;
}

function connect() {
  const conn = document.getElementById("conn");
  const offline = document.getElementById("offline");
  const source = new EventSource("/api/events/stream");
  source.addEventListener("snapshot", (ev) => {
    const snapshot = JSON.parse(ev.data);
    snapshot.bays.forEach(render);
    renderAlarms(snapshot.alarms);
    renderHealth(snapshot.health ?? []);
    conn.dataset.state = "live";
    offline.hidden = true;
  });
  source.addEventListener("bay", (ev) => render(JSON.parse(ev.data)));
  source.addEventListener("alarms", (ev) => renderAlarms(JSON.parse(ev.data)));
  source.addEventListener("health", (ev) => renderHealth([JSON.parse(ev.data)]));
  source.onerror = () => {
    conn.dataset.state = "offline";
    offline.hidden = false;  // EventSource reconnects by itself
  };
}
connect();
