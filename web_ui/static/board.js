// Shared page components: message lookup, the live bay board, the alarm list, the event stream.
// Every text comes from the message catalogue (the page's #messages JSON block), never from this file.
// An argument that is itself a catalogue key (a fault lock's reason) is shown translated.
const MESSAGES = JSON.parse(document.getElementById("messages").textContent);
export const T = (key, args = {}) =>
  (MESSAGES[key] ?? key).replace(/\{(\w+)\}/g, (_, k) => MESSAGES[args[k]] ?? args[k] ?? "");

// CSRF: every state-changing request repeats the recterm_csrf cookie in this header (web_ui/protection.py).
export const csrfHeaders = () => {
  const match = document.cookie.match(/(?:^|;\s*)recterm_csrf=([^;]+)/);
  return match ? { "X-CSRF-Token": match[1] } : {};
};

const signout = document.getElementById("signout");
if (signout) {
  signout.addEventListener("click", async () => {
    await fetch("/api/auth/signout", { method: "POST", headers: csrfHeaders() });
    location.href = "/login";
  });
}

export const fmtBytes = (n) => {
  if (n == null) return "–";
  const units = ["B", "KB", "MB", "GB", "TB"];
  let i = 0;
  while (n >= 1000 && i < units.length - 1) { n /= 1000; i++; }
  return `${n.toFixed(i ? 1 : 0)} ${units[i]}`;
};

// One tile per bay, cloned from <template id="bay-tile">, kept in bay-number order.
export function bayBoard(board) {
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
  return function render(bay) {
    const el = tileFor(bay.number);
    el.dataset.state = bay.state;
    el.dataset.checkout = bay.checkout ? bay.checkout.phase : "";
    el.querySelector(".bay-no").textContent = T("bay.number", { n: bay.number });
    el.querySelector(".badge").textContent = T(`bay.state.${bay.state}`);
    const cam = bay.camera;
    el.querySelector(".camera").textContent = cam ? [cam.serial, cam.model].filter(Boolean).join(" · ") : T("bay.empty");
    const battery = el.querySelector(".battery");
    if (battery) {
      battery.hidden = bay.battery_pct == null;
      battery.querySelector("i").style.width = `${bay.battery_pct ?? 0}%`;
      battery.querySelector("span").textContent = bay.battery_pct == null ? "" : `${bay.battery_pct}%`;
    }
    const free = el.querySelector(".free");
    if (free) {
      free.hidden = bay.storage_free == null;
      free.querySelector("span").textContent = fmtBytes(bay.storage_free);
    }
    const p = bay.progress;
    const prog = el.querySelector(".progress");
    if (prog) {
      prog.hidden = !p;
      if (p) {
        const pct = p.bytes_total ? Math.floor((100 * p.bytes_done) / p.bytes_total) : 100;
        prog.querySelector("i").style.width = `${pct}%`;
        prog.querySelector(".files").textContent =
          `${T("bay.files")} ${p.files_done}/${p.files_total} · ${fmtBytes(p.bytes_done)} / ${fmtBytes(p.bytes_total)} · ${pct}%`;
      }
    }
    let message = bay.message ? T(bay.message) : "";
    if (bay.checkout?.phase === "out") message = T("bay.on_duty");
    if (bay.checkout?.phase === "release") message = T("bay.take");
    el.querySelector(".message").textContent = message;
    el.querySelector(".message").title = bay.detail || "";
  };
}

export function renderAlarms(alarms) {
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

// The station's event stream: a snapshot first, then one event per change. EventSource reconnects itself.
// The station's health checks, one chip per check; the technical message is the chip's tooltip for staff.
export function healthPanel(section) {
  const latest = new Map();  // check -> latest result
  return (results) => {
    results.forEach((r) => latest.set(r.check, r));
    section.querySelector("ul").replaceChildren(...[...latest.values()].map((r) => {
      const item = document.createElement("li");
      item.dataset.check = r.check;
      item.dataset.status = r.status;
      item.textContent = `${T(`health.${r.check}`)}: ${T(`health.status.${r.status}`)}`;
      item.title = r.message;
      return item;
    }));
    section.hidden = latest.size === 0;
  };
}

export function connect(handlers) {
  const conn = document.getElementById("conn");
  const offline = document.getElementById("offline");
  const source = new EventSource("/api/events/stream");
  source.addEventListener("snapshot", (ev) => {
    const snapshot = JSON.parse(ev.data);
    snapshot.bays.forEach(handlers.bay);
    renderAlarms(snapshot.alarms);
    if (handlers.health) handlers.health(snapshot.health ?? []);
    conn.dataset.state = "live";
    offline.hidden = true;
  });
  source.addEventListener("bay", (ev) => handlers.bay(JSON.parse(ev.data)));
  source.addEventListener("alarms", (ev) => renderAlarms(JSON.parse(ev.data)));
  if (handlers.health) source.addEventListener("health", (ev) => handlers.health([JSON.parse(ev.data)]));
  for (const topic of ["badge", "checkin"]) {
    if (handlers[topic]) source.addEventListener(topic, (ev) => handlers[topic](JSON.parse(ev.data)));
  }
  source.onerror = () => {
    conn.dataset.state = "offline";
    offline.hidden = false;
  };
  return source;
}
