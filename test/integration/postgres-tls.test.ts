// TLS to Postgres from the app's postgres.js client, under Deno and under Bun, against a real
// server with `ssl = on` (`PG_TLS=1` in .ci/pg.sh; .ci/deno.sh sets the variables below):
//   TEST_TLS_DATABASE_URL  Postgres with TLS on, directly (no sslmode in the URL)
//   TEST_TLS_BOUNCER_URL   PgBouncer in front of it, taking TLS from clients (optional)
//   TEST_TLS_CA_FILE       the CA that signed the server's certificate, which names localhost
//                          (for verify-full; the URLs above use 127.0.0.1)
//   TEST_PLAIN_DATABASE_URL a Postgres without TLS (optional: sslmode=require must refuse it)
// Skipped unless TEST_TLS_DATABASE_URL is set. Each case runs test/support/pg-tls-probe.ts in a
// child process, so the TLS stack is the runtime's own (Deno's node:tls, Bun's).
import { describe, expect, test } from "bun:test";
import { join } from "node:path";
import { repoRoot } from "../support/server";

const DIRECT = process.env.TEST_TLS_DATABASE_URL;
const BOUNCER = process.env.TEST_TLS_BOUNCER_URL;
const CA_FILE = process.env.TEST_TLS_CA_FILE;
const PLAIN = process.env.TEST_PLAIN_DATABASE_URL;

type Runtime = "deno" | "bun";
type Probe = { ok: true; connections: number; ssl: boolean; version: string | null } | { ok: false; error: string; code: string | null };

const withSslmode = (url: string, mode: string, hostname?: string) => {
  const u = new URL(url);
  u.searchParams.set("sslmode", mode);
  if (hostname) u.hostname = hostname;
  return u.toString();
};

async function probe(runtime: Runtime, url: string, opts: { trustCa?: boolean } = {}): Promise<Probe> {
  const host = new URL(url).hostname;
  const script = join(repoRoot, "test/support/pg-tls-probe.ts");
  // Deno trusts an extra CA through --cert; Bun (like Node) through NODE_EXTRA_CA_CERTS.
  const cmd =
    runtime === "deno"
      ? [
          join(repoRoot, "node_modules/.bin/deno"),
          "run",
          `--allow-net=${host}`,
          "--allow-env",
          "--allow-read=.",
          ...(opts.trustCa ? [`--cert=${CA_FILE}`] : []),
          script,
        ]
      : [process.execPath, script];
  const proc = Bun.spawn(cmd, {
    cwd: repoRoot,
    env: {
      PATH: process.env.PATH ?? "/usr/bin:/bin",
      HOME: process.env.HOME ?? "/tmp",
      NO_COLOR: "1",
      PROBE_DATABASE_URL: url,
      ...(opts.trustCa && runtime === "bun" ? { NODE_EXTRA_CA_CERTS: CA_FILE! } : {}),
    },
    stdout: "pipe",
    stderr: "pipe",
  });
  const [stdout, stderr, code] = await Promise.all([new Response(proc.stdout).text(), new Response(proc.stderr).text(), proc.exited]);
  const line = stdout.trim().split("\n").pop() ?? "";
  try {
    return JSON.parse(line) as Probe;
  } catch {
    throw new Error(`${runtime} probe exited ${code} without a result:\n${stdout}\n${stderr}`);
  }
}

const runtimes: Runtime[] = ["deno", "bun"];

describe.skipIf(!DIRECT)("Postgres over TLS: happy", () => {
  for (const runtime of runtimes) {
    test(`${runtime}: sslmode=require straight to Postgres encrypts every pooled connection`, async () => {
      const r = await probe(runtime, withSslmode(DIRECT!, "require"));
      expect(r).toMatchObject({ ok: true, ssl: true, connections: 4 });
      expect((r as { version: string }).version).toMatch(/^TLSv1\.[23]$/);
    }, 60_000);

    test.skipIf(!BOUNCER)(
      `${runtime}: sslmode=require through PgBouncer`,
      async () => {
        // postgres.js never falls back to plain text under require: success means TLS to the pooler.
        expect(await probe(runtime, withSslmode(BOUNCER!, "require"))).toMatchObject({ ok: true });
      },
      60_000,
    );

    test.skipIf(!CA_FILE)(
      `${runtime}: sslmode=verify-full with the signing CA trusted`,
      async () => {
        for (const url of [DIRECT!, ...(BOUNCER ? [BOUNCER] : [])]) {
          expect(await probe(runtime, withSslmode(url, "verify-full", "localhost"), { trustCa: true })).toMatchObject({ ok: true });
        }
      },
      60_000,
    );
  }
});

describe.skipIf(!DIRECT)("Postgres over TLS: errors", () => {
  for (const runtime of runtimes) {
    test(`${runtime}: verify-full without the CA is refused with the certificate error`, async () => {
      expect(await probe(runtime, withSslmode(DIRECT!, "verify-full", "localhost"))).toEqual({
        ok: false,
        error: "unable to verify the first certificate",
        code: "UNABLE_TO_VERIFY_LEAF_SIGNATURE",
      });
    }, 60_000);
  }
});

describe.skipIf(!DIRECT)("Postgres over TLS: security", () => {
  for (const runtime of runtimes) {
    test.skipIf(!PLAIN)(
      `${runtime}: sslmode=require never falls back to plain text on a server without TLS`,
      async () => {
        const r = await probe(runtime, withSslmode(PLAIN!, "require"));
        expect(r.ok).toBe(false);
      },
      60_000,
    );

    const named =
      runtime === "bun"
        ? "bun: verify-full to an IP address refuses a certificate that names another host"
        : "deno: verify-full to an IP address checks the certificate against localhost, not the address (known gap)";
    test.skipIf(!CA_FILE)(
      named,
      async () => {
        // The certificate names localhost only; reached as 127.0.0.1 the server is not the host it
        // vouches for, even with its CA trusted. Bun checks the address. Deno 2.9 does not: when
        // postgres.js upgrades a socket to an IP address (no SNI), Deno's node:tls checks the
        // certificate against "localhost" instead. Pinned here so that the day Deno checks the
        // address this fails and docs/operations.md (## Deno, TLS) is updated.
        const r = await probe(runtime, withSslmode(DIRECT!, "verify-full", "127.0.0.1"), { trustCa: true });
        if (runtime === "bun") expect(r).toMatchObject({ ok: false, code: "ERR_TLS_CERT_ALTNAME_INVALID" });
        else expect(r).toMatchObject({ ok: true });
      },
      60_000,
    );
  }
});
