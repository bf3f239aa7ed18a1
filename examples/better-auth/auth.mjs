// Better Auth with its JWT plugin, on an embedded SQLite file: the identity side of the example.
import { mkdirSync } from "node:fs";
import { dirname } from "node:path";
import { betterAuth } from "better-auth";
import { jwt } from "better-auth/plugins";
import { SqliteDialect } from "kysely";
import Database from "libsql";

const chatkitUrl = process.env.CHATKIT_URL || "http://localhost:8000/chatkit";

/** Settings from the environment (see README.md). */
export const settings = {
  host: process.env.HOST || "127.0.0.1",
  port: Number(process.env.PORT || 3000),
  /** Where browsers reach this app; also the tokens' issuer (the backend's AUTH_JWT_ISSUER). */
  baseUrl: process.env.BETTER_AUTH_URL || "http://localhost:3000",
  /** The backend's protocol endpoint, which the page calls with the token. */
  chatkitUrl,
  /** Who the tokens are for (the backend's AUTH_JWT_AUDIENCE): by default the backend's origin. */
  audience: process.env.JWT_AUDIENCE || new URL(chatkitUrl).origin,
  /** Other origins that may call /api/auth/* with the session cookie, e.g. the backend's
   * /playground fetching /api/auth/token. */
  trustedOrigins: (process.env.TRUSTED_ORIGINS || new URL(chatkitUrl).origin)
    .split(",")
    .map((origin) => origin.trim())
    .filter(Boolean),
  databasePath: process.env.DATABASE_PATH || "data/auth.db",
};

mkdirSync(dirname(settings.databasePath), { recursive: true });

export const auth = betterAuth({
  // BETTER_AUTH_SECRET encrypts the signing keys at rest and signs the session cookie; Better
  // Auth refuses to start in production (NODE_ENV=production) without one.
  baseURL: settings.baseUrl,
  // The SQLite file through libsql (better-sqlite3's API; its binary comes as an npm package, so
  // nothing compiles) and Kysely's SQLite dialect: Better Auth would mistake a bare libsql handle
  // for a Kysely instance. `transaction: true` is what it sets for a bare better-sqlite3 handle.
  database: {
    dialect: new SqliteDialect({ database: new Database(settings.databasePath) }),
    type: "sqlite",
    transaction: true,
  },
  emailAndPassword: { enabled: true },
  trustedOrigins: settings.trustedOrigins,
  user: {
    additionalFields: {
      // The backend trusts this claim for quotas (AUTH_TIER_CLAIM). `input: false` keeps it out of
      // sign-up and update-user: without it any user could POST /api/auth/update-user
      // {"tier":"pro"}, fetch a fresh token and lift their own quota. Set it server-side only.
      tier: { type: "string", defaultValue: "free", input: false },
    },
  },
  plugins: [
    // EdDSA (Ed25519) keys by default, published at /api/auth/jwks. Issuer and audience default
    // to the base URL; name the audience explicitly so the token is for the ChatKit backend.
    jwt({ jwt: { issuer: settings.baseUrl, audience: settings.audience } }),
  ],
  telemetry: { enabled: false },
});
