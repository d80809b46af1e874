// The kiosk's check-out flow: identify officers (card or police number + PIN), take the proposed camera or
// pick a bay, show the gate's verdict. Touch only: no text inputs, an on-screen keypad.
// The station decides everything; this page only shows it and says what to do next.
import { T, bayBoard, connect, csrfHeaders } from "/static/board.js";

const $ = (id) => document.getElementById(id);
const flow = $("flow");
const lang = document.body.dataset.lang;
const single = document.body.dataset.single === "true";
const RESET_AFTER_MS = 30_000;

let state = { tickets: [], officers: [], exclude: [], alternative: null };
let pin = { police_no: "", pin: "" };
let field = "police_no";
let resetTimer = null;

function step(name) {
  flow.dataset.step = name;
  clearTimeout(resetTimer);
  if (name === "done" || name === "refused") resetTimer = setTimeout(startOver, RESET_AFTER_MS);
}

function showError(code, args = {}) {
  const el = $("error");
  el.textContent = code ? T(code, args) : "";
  el.dataset.code = code || "";
  el.hidden = !code;
}

function renderOfficers() {
  $("officers").replaceChildren(...state.officers.map((o) => {
    const chip = document.createElement("span");
    chip.className = "chip";
    chip.textContent = T("kiosk.identified", { name: o.name, police_no: o.police_no });
    return chip;
  }));
  $("who").textContent = T("kiosk.officer_n", { n: state.officers.length + 1 });
  $("single").hidden = !(single && state.officers.length === 1);
}

function renderPin() {
  $("field-police").querySelector(".value").textContent = pin.police_no;
  $("field-pin").querySelector(".value").textContent = "●".repeat(pin.pin.length);
  for (const el of document.querySelectorAll(".field")) el.dataset.active = String(el.dataset.field === field);
}

function startOver() {
  // The officers are done (or walked away): end their kiosk session and its tickets on the station too.
  if (state?.officers?.length) fetch("/api/auth/signout", { method: "POST", headers: csrfHeaders() }).catch(() => {});
  state = { tickets: [], officers: [], exclude: [], alternative: null };
  pin = { police_no: "", pin: "" };
  field = "police_no";
  showError(null);
  renderOfficers();
  renderPin();
  step("identify");
}

async function api(method, path, body) {
  let response;
  try {
    response = await fetch(path, {
      method,
      headers: { ...csrfHeaders(), ...(body ? { "Content-Type": "application/json" } : {}) },
      body: body ? JSON.stringify(body) : undefined,
    });
  } catch {
    return { ok: false, data: { error: "kiosk.network", args: {} } };
  }
  const data = await response.json().catch(() => ({}));
  if (!response.ok && !data.error) {
    const known = typeof data.detail === "string" && data.detail.startsWith("auth.");
    return { ok: false, data: { error: known ? data.detail : "kiosk.input", args: {} } };
  }
  return { ok: response.ok, data };
}

async function identify(credential) {
  if (flow.dataset.step !== "identify") return;
  const { ok, data } = await api("POST", "/api/checkout/identify", credential);
  pin = { police_no: "", pin: "" };
  field = "police_no";
  renderPin();
  if (!ok) return showError(data.error, data.args);
  if (state.officers.some((o) => o.police_no === data.officer.police_no)) {
    return showError("checkout.error.same_officer");
  }
  if (data.holding) return showError("kiosk.holding", { name: data.officer.name, serial: data.holding });
  showError(null);
  state.tickets.push(data.ticket);
  state.officers.push(data.officer);
  renderOfficers();
  if (state.officers.length >= 2) await choose();  // one officer alone: the "take alone" button
}

async function choose() {
  const query = state.exclude.map((b) => `exclude=${b}`).join("&");
  const { ok, data } = await api("GET", `/api/checkout/proposal?${query}`);
  if (!ok) return showError(data.error, data.args);
  const best = data.candidates[0];
  const others = data.bays.filter((b) => b.bay !== best?.bay);
  if (!best && !others.length) {
    showError("checkout.error.no_camera");
    return step("identify");
  }
  const rec = $("recommended");
  rec.hidden = !best;
  if (best) {
    rec.textContent = `${T("kiosk.recommended", best)} · ${T("kiosk.take_this")}`;
    rec.dataset.bay = best.bay;
    rec.onclick = () => take(best.bay);
  } else {
    showError("checkout.error.no_camera");
  }
  // Any other docked camera may be picked: the gate decides, and says why when it cannot go out.
  $("others").replaceChildren(...others.map((c) => {
    const button = document.createElement("button");
    button.type = "button";
    button.className = "button big choice secondary";
    button.dataset.bay = c.bay;
    button.dataset.state = c.state;
    button.textContent = `${T("bay.number", { n: c.bay })} · ${c.serial}` +
      (c.battery_pct == null ? "" : ` · ${T("kiosk.battery", { pct: c.battery_pct })}`);
    button.onclick = () => take(c.bay);
    return button;
  }));
  step("choose");
}

async function take(bay) {
  showError(null);
  step("checking");
  const { ok, data } = await api("POST", "/api/checkout", { tickets: state.tickets, bay, exclude: state.exclude });
  if (ok) {
    $("done-title").textContent = T("kiosk.success", { bay: data.bay, serial: data.camera });
    const due = new Date(data.due_at).toLocaleString(lang === "zh" ? "zh-CN" : "en-GB");
    $("done-detail").textContent = T("kiosk.success_detail", { name: data.officers[0].name, due });
    return step("done");
  }
  if (data.error?.startsWith("gate.")) {
    state.exclude.push(data.bay);
    $("refused-title").textContent = T("kiosk.refused", { bay: data.bay });
    $("refused-reason").textContent = T(data.error, data.args);
    $("refused-reason").dataset.code = data.error;
    const alt = data.alternative;
    const button = $("take-alternative");
    $("refused-next").textContent = alt ? T("kiosk.alternative", alt) : T("kiosk.no_alternative");
    button.hidden = !alt;
    if (alt) {
      button.textContent = T("kiosk.take_alternative", alt);
      button.onclick = () => take(alt.bay);
    }
    return step("refused");
  }
  if (data.error?.startsWith("checkout.error.bay_")) {
    showError(data.error, data.args);
    return choose();
  }
  // Identification no longer valid (timed out, someone holds a camera): start again, keep the message.
  const error = [data.error, data.args];
  startOver();
  showError(...error);
}

// Keypad: digits go to the selected field; OK identifies with police number + PIN.
for (const el of document.querySelectorAll(".field")) {
  el.addEventListener("click", () => { field = el.dataset.field; renderPin(); });
}
for (const key of document.querySelectorAll(".key")) {
  key.addEventListener("click", () => {
    const k = key.dataset.key;
    if (k === "clear") pin[field] = "";
    else if (k === "back") pin[field] = pin[field].slice(0, -1);
    else if (pin[field].length < (field === "pin" ? 8 : 6)) pin[field] += k;
    if (field === "police_no" && pin.police_no.length === 6 && k !== "back" && k !== "clear") field = "pin";
    renderPin();
  });
}
$("pin-ok").addEventListener("click", () => {
  if (!pin.police_no || !pin.pin) return showError("checkout.error.identify");
  identify({ police_no: pin.police_no, pin: pin.pin });
});
$("single").addEventListener("click", choose);
$("start-over").addEventListener("click", startOver);

// Check-in: the returning officer can report a fault in two taps (report, then a reason; details optional).
let checkinTimer = null;
let checkinCamera = null;
function showCheckin(camera) {
  checkinCamera = camera;
  $("checkin-ask").textContent = T("kiosk.fault.ask", { serial: camera });
  $("fault-open").hidden = false;
  $("fault-form").hidden = true;
  $("fault-result").hidden = true;
  $("fault-text").value = "";
  $("checkin").hidden = false;
  clearTimeout(checkinTimer);
  checkinTimer = setTimeout(() => { $("checkin").hidden = true; }, 60_000);
}
$("fault-open").addEventListener("click", () => {
  $("fault-open").hidden = true;
  $("fault-form").hidden = false;
});
for (const button of document.querySelectorAll("#fault-reasons [data-reason]")) {
  button.addEventListener("click", async () => {
    const reason = button.dataset.reason;
    const text = $("fault-text").value.trim();
    const result = $("fault-result");
    result.hidden = false;
    if (reason === "other" && !text) {
      result.textContent = T("kiosk.fault.need_text");
      result.dataset.ok = "false";
      return $("fault-text").focus();
    }
    const { ok } = await api("POST", "/api/faults/checkin", { camera: checkinCamera, reason, text });
    result.textContent = ok ? T("kiosk.fault.sent", { serial: checkinCamera }) : T("kiosk.fault.failed");
    result.dataset.ok = String(ok);
    if (ok) $("fault-form").hidden = true;
  });
}

// A docked camera due for maintenance: a reminder while it is in its bay.
const docked = new Map();  // bay -> serial
async function remindIfDue(bay) {
  const serial = bay.camera?.serial;
  if (docked.get(bay.number) === serial) return;
  docked.set(bay.number, serial);
  const list = $("reminders");
  list.querySelector(`[data-bay="${bay.number}"]`)?.remove();
  if (!serial || bay.state === "unauthorised") return;
  const { ok, data } = await api("GET", `/api/maintenance/schedule/${encodeURIComponent(serial)}`);
  if (!ok || data.state === "ok" || docked.get(bay.number) !== serial) return;
  const item = Object.assign(document.createElement("li"), { textContent: T("kiosk.fault.due", { serial }) });
  item.dataset.bay = bay.number;
  item.dataset.camera = serial;
  list.append(item);
}

const renderBay = bayBoard($("bays"));
let toastTimer = null;
connect({
  bay: (bay) => { renderBay(bay); remindIfDue(bay); },
  badge: (data) => identify({ card: data.card }),
  checkin: (data) => {
    const toast = $("toast");
    toast.textContent = T("kiosk.returned", { serial: data.camera, bay: data.bay });
    toast.hidden = false;
    clearTimeout(toastTimer);
    toastTimer = setTimeout(() => { toast.hidden = true; }, 15_000);
    showCheckin(data.camera);
  },
});
startOver();
