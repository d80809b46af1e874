// A camera's page: record a maintenance entry (an attachment is uploaded first and referenced by its hash;
// ticked faults are closed by a successful repair). The station validates; this page shows what it says.
import { T, connect, csrfHeaders } from "/static/board.js";

const form = document.getElementById("entry-form");
const fail = (message) => {
  const el = document.getElementById("entry-error");
  el.textContent = T("maint.form.error", { message });
  el.hidden = false;
};

async function post(path, body, type = "application/json") {
  const response = await fetch(path, { method: "POST", headers: { "Content-Type": type, ...csrfHeaders() }, body });
  const data = await response.json().catch(() => ({}));
  return { ok: response.ok, data };
}

form.addEventListener("submit", async (ev) => {
  ev.preventDefault();
  const fields = new FormData(form);
  const attachments = [];
  const file = fields.get("attachment");
  if (file && file.size) {
    const { ok, data } = await post("/api/maintenance/attachments", file, file.type || "application/octet-stream");
    if (!ok) return fail(data.message ?? data.detail ?? "");
    attachments.push(data.sha256);
  }
  const entry = {
    target: "camera", target_id: form.dataset.camera, kind: fields.get("kind"), result: fields.get("result"),
    what: fields.get("what").trim(), attachments, faults: fields.getAll("faults"),
  };
  const { ok, data } = await post("/api/maintenance/entries", JSON.stringify(entry));
  if (!ok) return fail(data.message ?? (typeof data.detail === "string" ? T(data.detail) : JSON.stringify(data.detail)));
  location.reload();
});

connect({ bay: () => {} });
