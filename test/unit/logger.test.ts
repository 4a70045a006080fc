import { describe, expect, test } from "bun:test";
import { createPgliteDatabase } from "../../src/db/client";
import { users } from "../../src/db/schema";
import { createBufferedWriter, describeError } from "../../src/lib/logger";

describe("describeError", () => {
  test("a failed Drizzle query is logged without its bound parameters", async () => {
    // A real failure: the table does not exist in an unmigrated database.
    const handle = await createPgliteDatabase(undefined);
    try {
      const secret = "$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHQ$secret-hash-value";
      const failure = await handle.db
        .insert(users)
        .values({ email: "leak@example.com", passwordHash: secret })
        .then(
          () => undefined,
          (error: unknown) => error,
        );
      expect(failure).toBeInstanceOf(Error);
      const logged = JSON.stringify(describeError(failure));
      expect(logged).toContain("insert into");
      expect(logged).toContain("does not exist");
      expect(logged).not.toContain(secret);
      expect(logged).not.toContain("leak@example.com");
    } finally {
      await handle.close();
    }
  }, 60_000);

  test("other errors keep their message", () => {
    expect(describeError(new Error("boom")).error).toBe("boom");
    expect(describeError("plain").error).toBe("plain");
  });
});

describe("createBufferedWriter", () => {
  test("lines are written a little later, together and in order, never during write()", async () => {
    const chunks: string[] = [];
    const out = createBufferedWriter(
      (c) => chunks.push(c),
      (c) => chunks.push(c),
      64 * 1024,
      30,
    );
    out.write("one");
    await new Promise((r) => setImmediate(r));
    out.write("two");
    // Not at the end of the turn: lines of several turns go in one write.
    expect(chunks).toEqual([]);
    await Bun.sleep(60);
    expect(chunks).toEqual(["one\ntwo\n"]);
    out.write("three");
    out.flush();
    expect(chunks).toEqual(["one\ntwo\n", "three\n"]);
  });

  test("a large backlog is written at once instead of growing", () => {
    const chunks: string[] = [];
    const out = createBufferedWriter(
      (c) => chunks.push(c),
      () => {},
      10,
    );
    out.write("0123456789");
    expect(chunks).toEqual(["0123456789\n"]);
  });

  test("what is still buffered is written when the process exits", async () => {
    const script = `import { createBufferedWriter, createLogger } from ${JSON.stringify(`${import.meta.dir}/../../src/lib/logger.ts`)};
      const log = createLogger("info", createBufferedWriter().write);
      log.info("last words", { n: 1 });
      process.exit(0);`;
    const proc = Bun.spawn([process.execPath, "-e", script], { stdout: "pipe", stderr: "pipe" });
    const [stdout] = await Promise.all([new Response(proc.stdout).text(), proc.exited]);
    const [line] = stdout.trim().split("\n");
    expect(JSON.parse(line)).toMatchObject({ level: "info", msg: "last words", n: 1 });
  }, 30_000);
});
