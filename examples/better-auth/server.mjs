// The example's HTTP server: Better Auth under /api/auth/*, the page under /.
import { createServer } from "node:http";
import { readFile } from "node:fs/promises";
import { toNodeHandler } from "better-auth/node";
import { getMigrations } from "better-auth/db/migration";
import { auth, settings } from "./auth.mjs";

const PAGES = {
  "/": ["index.html", "text/html; charset=utf-8"],
  "/app.js": ["app.js", "text/javascript; charset=utf-8"],
  "/style.css": ["style.css", "text/css; charset=utf-8"],
};
const chatkitOrigin = new URL(settings.chatkitUrl).origin;
const CSP = [
  "default-src 'self'",
  `connect-src 'self' ${chatkitOrigin}`,
  "frame-ancestors 'none'",
  "base-uri 'none'",
  "form-action 'self'",
].join("; ");

const authHandler = toNodeHandler(auth);

/** Lets the trusted origins (the backend's /playground) call /api/auth/* with the cookie. */
function allowTrustedOrigin(req, res) {
  const origin = req.headers.origin;
  if (!origin || !settings.trustedOrigins.includes(origin)) return false;
  res.setHeader("Access-Control-Allow-Origin", origin);
  res.setHeader("Access-Control-Allow-Credentials", "true");
  res.setHeader("Vary", "Origin");
  if (req.method !== "OPTIONS") return false;
  res.setHeader("Access-Control-Allow-Methods", "GET, POST");
  res.setHeader("Access-Control-Allow-Headers", "Content-Type");
  res.writeHead(204).end();
  return true;
}

async function servePage(req, res) {
  const path = new URL(req.url, settings.baseUrl).pathname;
  if (path === "/config.json") {
    res.writeHead(200, { "Content-Type": "application/json" });
    res.end(JSON.stringify({ chatkitUrl: settings.chatkitUrl }));
    return;
  }
  const page = PAGES[path];
  if (req.method !== "GET" || !page) {
    res.writeHead(404, { "Content-Type": "text/plain" }).end("Not found");
    return;
  }
  const body = await readFile(new URL(`./public/${page[0]}`, import.meta.url));
  res.writeHead(200, {
    "Content-Type": page[1],
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
  });
  res.end(body);
}

// Create or update Better Auth's tables (user, session, account, verification, jwks).
const { runMigrations } = await getMigrations(auth.options);
await runMigrations();

const server = createServer((req, res) => {
  if (req.url.startsWith("/api/auth/")) {
    if (allowTrustedOrigin(req, res)) return;
    authHandler(req, res);
    return;
  }
  servePage(req, res).catch((error) => {
    console.error(error);
    res.writeHead(500).end();
  });
});
server.listen(settings.port, settings.host, () => {
  console.log(`Better Auth example on ${settings.baseUrl} (listening on ${settings.host}:${settings.port})`);
});
for (const signal of ["SIGINT", "SIGTERM"]) {
  process.on(signal, () => server.close(() => process.exit(0)));
}
