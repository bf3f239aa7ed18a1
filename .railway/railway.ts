// Railway Infrastructure as Code (`railway config plan` / `railway config apply`, see docs/deploy.md).
// Railway reads this file instead of railway.json / railway.toml, which are deprecated, cannot be
// used by new services, and stop being read on 2026-12-01.
import { defineRailway, postgres, project, service } from "railway/iac";

export default defineRailway(() => {
  const db = postgres("postgres");

  const api = service("chatkit-backend", {
    build: { builder: "DOCKERFILE", dockerfilePath: "Dockerfile" },
    // Runs in its own container with the new image before the deployment starts; a failure
    // stops the deployment. The advisory lock in migrations/env.py makes concurrent runs safe.
    preDeploy: "alembic upgrade head",
    // Railway switches traffic to a new deployment once this answers 200.
    healthcheck: "/healthz",
    healthcheckTimeout: 120,
    // SIGTERM-to-SIGKILL time for the old deployment (Railway's default is 0): above the image's
    // GRACEFUL_SHUTDOWN_SECONDS (20) plus 5 s for interrupted streams to save partial replies.
    deploy: { drainingSeconds: 30, restartPolicyType: "ON_FAILURE", restartPolicyMaxRetries: 10 },
    env: {
      // Railway's `postgresql://…` URL; the app rewrites it for asyncpg.
      DATABASE_URL: db.env.DATABASE_URL,
      ENVIRONMENT: "production",
    },
  });

  return project("chatkit-backend", {
    resources: [db, api],
  });
});
