// Staff sign-in: posts the form as JSON with the CSRF header, then goes where the user was headed.
import { T, csrfHeaders } from "/static/board.js";

const form = document.getElementById("signin");
const error = document.getElementById("signin-error");

// Only a path on this station: never an address another site could put in the link.
function next() {
  const target = new URLSearchParams(location.search).get("next") || "/";
  return target.startsWith("/") && !target.startsWith("//") && !target.startsWith("/\\") ? target : "/";
}

form.addEventListener("submit", async (ev) => {
  ev.preventDefault();
  const body = { username: form.username.value.trim(), password: form.password.value };
  const response = await fetch("/api/auth/signin", {
    method: "POST",
    headers: { ...csrfHeaders(), "Content-Type": "application/json" },
    body: JSON.stringify(body),
  }).catch(() => null);
  if (response?.ok) {
    location.href = next();
    return;
  }
  const data = response ? await response.json().catch(() => ({})) : {};
  error.textContent = T(typeof data.detail === "string" ? data.detail : "auth.error.signin");
  error.hidden = false;
  form.password.value = "";
});
