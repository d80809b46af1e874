// Equipment staff page: fleet ratio, cameras out, usage ledger, registry import/export. Shared components.
import { T, bayBoard, connect, csrfHeaders, healthPanel } from "/static/board.js";

const $ = (id) => document.getElementById(id);
const local = (iso) => (iso ? new Date(iso).toLocaleString(document.body.dataset.lang === "zh" ? "zh-CN" : "en-GB") : "");

function rows(table, items, cells) {
  table.tBodies[0].replaceChildren(...items.map((item) => {
    const tr = document.createElement("tr");
    for (const text of cells(item)) {
      const td = document.createElement("td");
      td.textContent = text ?? "";
      tr.append(td);
    }
    return tr;
  }));
  if (!items.length) table.tBodies[0].innerHTML = `<tr><td>${T("admin.none")}</td></tr>`;
}

const assignmentCells = (a) => [
  a.camera, T("bay.number", { n: a.bay }), a.officers.map((o) => `${o.name} ${o.police_no}`).join("、"),
  local(a.issued_at), local(a.returned_at) || local(a.due_at), T(`admin.status.${a.status}`),
];

// Equipment management: what is due or overdue for maintenance, open faults, weak batteries. Each camera
// links to its page (battery chart, faults, maintenance log).
function cameraLink(serial) {
  return Object.assign(document.createElement("a"), {
    href: `/admin/camera/${encodeURIComponent(serial)}?lang=${document.body.dataset.lang}`, textContent: serial,
  });
}

function linkedRows(table, items, cells, attrs = () => ({})) {
  rows(table, items, cells);
  if (!items.length) return;
  [...table.tBodies[0].rows].forEach((tr, i) => {
    Object.assign(tr.dataset, attrs(items[i]));
    tr.cells[0].replaceChildren(cameraLink(tr.cells[0].textContent));
  });
}

// A damaged card's fault names the files left on the camera, each with its reason in words.
function faultText(f) {
  const files = f.detail?.files;
  if (!files?.length) return f.text;
  const named = files.map((x) => `${x.path || T("maint.damaged_volume")}: ${T(`volume.damage.${x.reason}`)}`);
  if (f.detail.count > files.length) named.push(T("maint.damaged_more", { n: f.detail.count - files.length }));
  return named.join("; ");
}

async function refreshEquipment() {
  const schedule = (await (await fetch("/api/maintenance/schedule")).json()).filter((r) => r.state !== "ok");
  linkedRows($("maintenance-due"), schedule, (r) => [
    r.camera, r.model, r.last_at ? local(r.last_at) : T("maint.never"), r.due_at ? local(r.due_at) : "–",
    T(`maint.state.${r.state}`),
  ], (r) => ({ camera: r.camera, state: r.state }));
  linkedRows($("open-faults"), await (await fetch("/api/faults")).json(), (f) => [
    f.camera, T(`fault.reason.${f.reason}`), T(`maint.source.${f.source}`), faultText(f), local(f.opened_at),
  ], (f) => ({ camera: f.camera, fault: f.id }));
  const weak = (await (await fetch("/api/battery")).json()).filter((b) => b.weak);
  linkedRows($("weak-batteries"), weak, (b) => [
    b.camera, `${Math.round(b.trend.health * 100)}%`, `${Math.round(b.trend.current_mah)} / ${Math.round(b.trend.reference_mah)} mAh`,
  ], (b) => ({ camera: b.camera }));
}

// Spot checks: draw a reproducible sample, enter a verdict per recording; replay waits for approval.
async function postJson(path, body) {
  const response = await fetch(path, { method: "POST", headers: { "Content-Type": "application/json", ...csrfHeaders() }, body: JSON.stringify(body) });
  return { ok: response.ok, status: response.status, data: await response.json().catch(() => ({})) };
}

function spotMessage(text) {
  const el = $("spot-result");
  el.textContent = text;
  el.hidden = false;
}

// A failed call's message: the station's own text, or a catalogue code (a refusal such as auth.error.unlinked).
const reason = (data) => data.message ?? (typeof data.detail === "string" ? T(data.detail) : JSON.stringify(data.detail ?? ""));

// The reviewer is the signed-in account's police number (the station takes it from the session, never from here).
async function showReviewer() {
  const me = await (await fetch("/api/auth/me")).json();
  const linked = me.police_nos?.length === 1 ? me.police_nos[0] : "";
  const el = $("spot-actor");
  el.dataset.policeNo = linked;
  el.textContent = linked ? T("spot.by", { police_no: linked }) : T("auth.error.unlinked");
  el.classList.toggle("bad", !linked);
}

function renderSample(check) {
  const body = $("spot-sample").tBodies[0];
  body.replaceChildren(...check.sample.map((r) => {
    const tr = document.createElement("tr");
    tr.dataset.key = r.key;
    tr.dataset.verdict = r.verdict ?? "";
    for (const text of [r.officer, r.camera, r.name, local(r.ingested_at)]) {
      tr.append(Object.assign(document.createElement("td"), { textContent: text }));
    }
    const actions = document.createElement("td");
    for (const verdict of ["compliant", "issue", "unusable"]) {
      const button = Object.assign(document.createElement("button"), {
        type: "button", className: "button secondary", textContent: T(`spot.verdict.${verdict}`),
      });
      button.dataset.verdict = verdict;
      button.setAttribute("aria-pressed", String(r.verdict === verdict));
      button.onclick = async () => {
        const { ok, data } = await postJson(`/api/spot-checks/${check.id}/verdicts`, { key: r.key, verdict });
        if (!ok) return spotMessage(T("spot.error", { message: reason(data) }));
        renderSample(data);
      };
      actions.append(button);
    }
    const view = Object.assign(document.createElement("button"), { type: "button", className: "button", textContent: T("spot.view") });
    view.dataset.action = "view";
    view.onclick = async () => {
      const response = await fetch(`/api/spot-checks/${check.id}/recordings/${r.key}/view`);
      if (response.status === 403) spotMessage(T("spot.approval"));
    };
    actions.append(view);
    tr.append(actions);
    return tr;
  }));
}

$("spot-form").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  const f = new FormData($("spot-form"));
  const body = { size: Number(f.get("size")), since: f.get("sample_since"), until: f.get("sample_until") };
  if (f.get("seed").trim()) body.seed = Number(f.get("seed"));
  const { ok, data } = await postJson("/api/spot-checks", body);
  if (!ok) return spotMessage(T("spot.error", { message: reason(data) }));
  spotMessage(T("spot.drawn", { id: data.id, n: data.sample.length, population: data.population, seed: data.seed }));
  renderSample(data);
});

async function refresh() {
  refreshEquipment();
  const ratio = await (await fetch("/api/fleet/ratio")).json();
  const el = $("ratio");
  el.dataset.ok = String(ratio.meets_standard);
  el.textContent = `${T("admin.ratio_line", { ...ratio, ratio: ratio.ratio ?? "–" })} — ` +
    (ratio.meets_standard ? T("admin.ratio_ok") : T("admin.ratio_short", ratio));
  rows($("open"), await (await fetch("/api/assignments/open")).json(), assignmentCells);
  rows($("uploads"), await (await fetch("/api/uploads/at-risk")).json(), (u) => [
    u.camera_serial, u.name, local(u.deadline), u.overdue ? T("admin.upload_overdue") : T("admin.upload_due_soon"),
  ]);
  await loadLedger();
}

async function loadLedger() {
  const params = new URLSearchParams([...new FormData($("ledger-filter"))].filter(([, v]) => v));
  $("ledger-csv").href = `/api/ledger.csv?${params}`;
  rows($("ledger"), await (await fetch(`/api/ledger?${params}`)).json(), assignmentCells);
}

$("ledger-filter").addEventListener("submit", (ev) => { ev.preventDefault(); loadLedger(); });
for (const input of document.querySelectorAll("[data-import]")) {
  input.addEventListener("change", async () => {
    const file = input.files[0];
    if (!file) return;
    const response = await fetch(`/api/registry/${input.dataset.import}.csv`, {
      method: "POST", headers: { ...csrfHeaders(), "Content-Type": "text/csv" }, body: await file.text(),
    });
    const data = await response.json();
    const lines = response.ok ? [T("admin.imported", { n: data.imported })] : data.errors ?? [data.detail];
    $("import-result").replaceChildren(...lines.map((line) => Object.assign(document.createElement("li"), { textContent: line })));
    input.value = "";
    refresh();
  });
}

// The checkpoint verifier keys (current first, then the retired ones) for a records office to copy.
function keyLine(label, value, role) {
  const line = Object.assign(document.createElement("p"), { className: "key-line" });
  const code = Object.assign(document.createElement("code"), { textContent: value });
  code.dataset.role = role;
  line.append(Object.assign(document.createElement("span"), { className: "key-label", textContent: label }), code);
  const copy = Object.assign(document.createElement("button"), { type: "button", className: "button secondary", textContent: T("keys.copy") });
  copy.dataset.copy = role;
  copy.onclick = async () => {
    try {
      await navigator.clipboard.writeText(value);
      keysMessage(T("keys.copied", { what: label }));
    } catch {  // no clipboard here (an old browser, a page not served securely): select it for Ctrl+C
      getSelection().selectAllChildren(code);
      keysMessage(T("keys.copy_manual"));
    }
  };
  line.append(copy);
  return line;
}

function keysMessage(text) {
  const el = $("keys-status");
  el.textContent = text;
  el.hidden = false;
}

async function showSigningKeys() {
  const response = await fetch("/api/keys/signing");
  const data = await response.json();
  if (!response.ok) return keysMessage(T(data.detail));
  $("keys-origin").textContent = data.origin;
  $("keys-list").replaceChildren(...[...data.keys].reverse().map((k) => {
    const block = Object.assign(document.createElement("div"), { className: "signing-key" });
    block.dataset.fingerprint = k.fingerprint;
    block.dataset.current = String(k.last_entry === null);
    const heading = k.last_entry === null
      ? T("keys.current", { first: k.first_entry })
      : T("keys.retired", { first: k.first_entry, last: k.last_entry, at: local(k.retired_at) });
    block.append(
      Object.assign(document.createElement("h3"), { textContent: heading }),
      keyLine(T("keys.verifier"), k.verifier_key, "verifier"),
      keyLine(T("keys.fingerprint"), k.fingerprint, "fingerprint"),
    );
    return block;
  }));
}

connect({ bay: bayBoard($("bays")), checkin: refresh, health: healthPanel($("health")) });
refresh();
showReviewer();
showSigningKeys();
