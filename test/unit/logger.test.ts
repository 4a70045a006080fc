import { describe, expect, test } from "bun:test";
import { createPgliteDatabase } from "../../src/db/client";
import { users } from "../../src/db/schema";
import { describeError } from "../../src/lib/logger";

describe("describeError", () => {
  test("a failed Drizzle query is logged without its bound parameters", async () => {
    // A real failure: the table does not exist in an unmigrated database.
    const handle = await createPgliteDatabase(undefined);
    try {
      const secret = "$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHQ$secret-hash-value";
      const failure = await handle.db
        .insert(users)
        .values({ email: "leak@example.com", passwordHash: secret })
        .then(() => undefined, (error: unknown) => error);
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
