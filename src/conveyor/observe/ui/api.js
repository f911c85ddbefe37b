// The management API as the page calls it: the token comes from the URL's fragment (#token=..., never sent
// to a server), is kept in sessionStorage (gone with the tab) and goes out as Authorization: Bearer.

const KEY = "conveyor.token";

export class AuthError extends Error {}
export class Missing extends Error {}

// Move a #token=... fragment into sessionStorage and out of the address bar (and the browser's history).
export function takeTokenFromFragment() {
  const params = new URLSearchParams(location.hash.slice(1));
  const found = params.get("token");
  if (found === null) return;
  params.delete("token");
  if (found.trim()) sessionStorage.setItem(KEY, found.trim());
  const rest = params.toString();
  history.replaceState(null, "", location.pathname + location.search + (rest ? `#${rest}` : ""));
}

export function hasToken() {
  return Boolean(sessionStorage.getItem(KEY));
}

export function setToken(value) {
  sessionStorage.setItem(KEY, value.trim());
}

export function forgetToken() {
  sessionStorage.removeItem(KEY);
}

// GET /api/v1{path} as JSON. AuthError for 401/403 (no, bad or too weak a token), Missing for 404,
// Error with the server's {"error": ...} for the rest.
export async function get(path) {
  const token = sessionStorage.getItem(KEY);
  if (!token) throw new AuthError("no token");
  const response = await fetch(`/api/v1${path}`, {
    headers: { authorization: `Bearer ${token}` },
    cache: "no-store",
  });
  let body = null;
  try {
    body = await response.json();
  } catch {
    body = null;
  }
  const message = (body && body.error) || `HTTP ${response.status}`;
  if (response.status === 401 || response.status === 403) throw new AuthError(message);
  if (response.status === 404) throw new Missing(message);
  if (!response.ok) throw new Error(message);
  return body;
}
