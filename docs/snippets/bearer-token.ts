// Better Auth's JWT for this backend: fetched with the session cookie, cached, and refreshed a
// minute before its 15 minutes run out.
const AUTH_URL = "http://localhost:3000"; // your Better Auth app

let cached: { token: string; expires: number } | null = null;

export async function bearerToken(): Promise<string> {
  if (!cached || cached.expires - Date.now() < 60_000) {
    const response = await fetch(`${AUTH_URL}/api/auth/token`, { credentials: "include" });
    if (!response.ok) throw new Error(`not signed in (${response.status})`);
    const { token } = (await response.json()) as { token: string };
    const payload = token.split(".")[1].replace(/-/g, "+").replace(/_/g, "/");
    cached = { token, expires: (JSON.parse(atob(payload)) as { exp: number }).exp * 1000 };
  }
  return cached.token;
}

// ChatKit's `api.fetch`: keeps the headers ChatKit set, adds the token.
export const chatkitFetch: typeof fetch = async (input, init) => {
  const headers = new Headers(init?.headers);
  headers.set("Authorization", `Bearer ${await bearerToken()}`);
  return fetch(input, { ...init, headers });
};
