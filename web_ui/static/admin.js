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

async function refresh() {
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

connect({ bay: bayBoard($("bays")), checkin: refresh, health: healthPanel($("health")) });
refresh();
