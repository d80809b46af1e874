// An officer's own recordings: identify (card or police number + PIN), tag each recording, explain gaps.
// The station decides; this page shows what it says, in the catalogue's words.
import { T, connect, csrfHeaders, fmtBytes } from "/static/board.js";

const $ = (id) => document.getElementById(id);
const IDLE_MS = 120_000;  // a forgotten session ends by itself
let ticket = null;
let idle = null;

function showError(code, args = {}) {
  $("error").textContent = code ? T(code, args) : "";
  $("error").dataset.code = code || "";
  $("error").hidden = !code;
}

async function post(url, body) {
  const response = await fetch(url, {
    method: "POST", headers: { "content-type": "application/json", ...csrfHeaders() }, body: JSON.stringify(body),
  });
  const data = await response.json().catch(() => ({}));
  if (!response.ok) {
    showError(data.error ?? "records.error.generic", data.args ?? {});
    if (data.error === "checkout.error.ticket") signOut();
    return null;
  }
  showError(null);
  return data;
}

function touch() {
  clearTimeout(idle);
  idle = setTimeout(signOut, IDLE_MS);
}

async function identify(body) {
  const data = await post("/api/checkout/identify", body);
  if (!data) return;
  ticket = data.ticket;
  $("mine-title").textContent = T("records.mine", { name: data.officer.name, police_no: data.officer.police_no });
  await load();
}

async function load() {
  const data = await post("/api/records/mine", { ticket });
  if (!data) return;
  touch();
  $("identify").hidden = true;
  $("mine").hidden = false;
  renderGaps(data.gaps);
  renderRecordings(data.recordings);
}

function renderGaps(gaps) {
  $("no-gaps").hidden = gaps.length > 0;
  $("gaps").replaceChildren(...gaps.map((gap) => {
    const item = document.createElement("li");
    item.dataset.start = gap.start;
    const what = document.createElement("p");
    what.textContent = T("records.gap", { after: gap.after, before: gap.before, minutes: Math.round(gap.seconds / 60) });
    item.append(what);
    if (gap.explanation) {
      const said = document.createElement("p");
      said.className = "ok";
      said.textContent = T("records.explained", { text: gap.explanation });
      item.append(said);
    }
    const form = document.createElement("form");
    const text = Object.assign(document.createElement("input"), { name: "text", maxLength: 1000, required: true });
    text.placeholder = T("records.explain_hint");
    const save = Object.assign(document.createElement("button"), { type: "submit", className: "button primary" });
    save.textContent = T("records.explain");
    form.append(text, save);
    form.addEventListener("submit", async (ev) => {
      ev.preventDefault();
      const body = { ticket, assignment: gap.assignment, start: gap.start, text: text.value };
      if (await post("/api/records/gaps/explain", body)) await load();
    });
    item.append(form);
    return item;
  }));
}

function renderRecordings(rows) {
  $("no-recordings").hidden = rows.length > 0;
  $("recordings").tBodies[0].replaceChildren(...rows.map((row) => {
    const tr = document.createElement("tr");
    tr.dataset.sha256 = row.sha256;
    tr.dataset.retention = row.retention_class;
    const name = document.createElement("td");
    name.textContent = `${row.name} · ${row.camera_mtime ?? ""} · ${fmtBytes(row.size)}`;
    const state = document.createElement("td");
    state.className = "retention";
    state.textContent = row.classification
      ? `${T(`records.categories.${row.classification.category}`)} · ${T(`records.retention.${row.retention_class}`)}`
      : T("records.untagged");
    const action = document.createElement("td");
    const form = $("tag-form").content.firstElementChild.cloneNode(true);
    if (row.classification) {
      for (const [key, value] of Object.entries(row.classification)) if (form.elements[key]) form.elements[key].value = value ?? "";
    }
    form.addEventListener("submit", async (ev) => {
      ev.preventDefault();
      const fields = Object.fromEntries(new FormData(form).entries());
      if (await post(`/api/records/${row.sha256}/tag`, { ticket, ...fields })) await load();
    });
    action.append(form);
    tr.append(name, state, action);
    return tr;
  }));
}

function signOut() {
  // The kiosk session ends with the officer: the next person at the screen starts afresh.
  if (ticket) fetch("/api/auth/signout", { method: "POST", headers: csrfHeaders() }).catch(() => {});
  ticket = null;
  clearTimeout(idle);
  $("mine").hidden = true;
  $("identify").hidden = false;
  $("police-no").value = "";
  $("pin").value = "";
}

$("pin-form").addEventListener("submit", (ev) => {
  ev.preventDefault();
  identify({ police_no: $("police-no").value, pin: $("pin").value });
});
$("done").addEventListener("click", signOut);
document.addEventListener("pointerdown", () => ticket && touch());
connect({ bay: () => {}, badge: (data) => { if (!ticket) identify({ card: data.card }); } });
