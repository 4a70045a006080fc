import { describe, expect, test } from "bun:test";
import { decodeJwt, decodeProtectedHeader, SignJWT } from "jose";
import {
  createTokenConfig,
  digestsEqual,
  hashToken,
  signAccessToken,
  TOKEN_AUDIENCE,
  TOKEN_ISSUER,
  verifyAccessToken,
} from "../../src/lib/tokens";

const config = createTokenConfig("unit-test-secret-that-is-long-enough!!", 3600);
const userId = crypto.randomUUID();
const sessionId = crypto.randomUUID();
const now = new Date("2026-11-24T23:17:00.000Z");
const later = new Date(now.getTime() + 3600 * 1000);

const b64 = (value: unknown) => Buffer.from(JSON.stringify(value)).toString("base64url");

async function codeOf(promise: Promise<unknown>): Promise<string> {
  try {
    await promise;
    return "accepted";
  } catch (error) {
    return (error as { kind?: string }).kind ?? "not a domain error";
  }
}

const claims = () => ({
  iss: TOKEN_ISSUER,
  aud: TOKEN_AUDIENCE,
  sub: userId,
  sid: sessionId,
  iat: Math.floor(now.getTime() / 1000),
  exp: Math.floor(later.getTime() / 1000),
});

describe("tokens: happy path", () => {
  test("a signed token carries iss, aud, sub, sid, iat, exp and verifies", async () => {
    const token = await signAccessToken(config, { userId, sessionId, issuedAt: now, expiresAt: later });
    expect(decodeProtectedHeader(token).alg).toBe("HS256");
    const payload = decodeJwt(token);
    expect(payload).toMatchObject(claims());
    expect(await verifyAccessToken(config, token, now)).toEqual({ userId, sessionId });
  });

  test("hashToken is the hex SHA-256 of the token", async () => {
    const expected = new Bun.CryptoHasher("sha256").update("abc").digest("hex");
    expect(await hashToken("abc")).toBe(expected);
    expect(await hashToken("abc")).toMatch(/^[0-9a-f]{64}$/);
  });

  test("digestsEqual compares exactly", () => {
    expect(digestsEqual("abcd", "abcd")).toBe(true);
    expect(digestsEqual("abcd", "abce")).toBe(false);
    expect(digestsEqual("abcd", "abc")).toBe(false);
  });
});

describe("tokens: security (every forgery is UNAUTHORIZED)", () => {
  test("alg none", async () => {
    const token = `${b64({ alg: "none", typ: "JWT" })}.${b64(claims())}.`;
    expect(await codeOf(verifyAccessToken(config, token, now))).toBe("UNAUTHORIZED");
  });

  test("another algorithm with the same key (HS512)", async () => {
    const token = await new SignJWT(claims()).setProtectedHeader({ alg: "HS512" }).sign(config.secret);
    expect(await codeOf(verifyAccessToken(config, token, now))).toBe("UNAUTHORIZED");
  });

  test("signed with another key", async () => {
    const other = new TextEncoder().encode("another-secret-that-is-long-enough-too!");
    const token = await new SignJWT(claims()).setProtectedHeader({ alg: "HS256" }).sign(other);
    expect(await codeOf(verifyAccessToken(config, token, now))).toBe("UNAUTHORIZED");
  });

  test("expired", async () => {
    const token = await signAccessToken(config, { userId, sessionId, issuedAt: now, expiresAt: later });
    expect(await codeOf(verifyAccessToken(config, token, new Date(later.getTime() + 1000)))).toBe("UNAUTHORIZED");
  });

  test("a tampered payload keeps the old signature and fails", async () => {
    const token = await signAccessToken(config, { userId, sessionId, issuedAt: now, expiresAt: later });
    const [header, , signature] = token.split(".");
    const forged = `${header}.${b64({ ...claims(), sub: crypto.randomUUID() })}.${signature}`;
    expect(await codeOf(verifyAccessToken(config, forged, now))).toBe("UNAUTHORIZED");
  });

  test("missing exp, sid or sub, or a wrong issuer or audience", async () => {
    const sign = (payload: Record<string, unknown>) => new SignJWT(payload).setProtectedHeader({ alg: "HS256" }).sign(config.secret);
    const { exp: _exp, ...noExp } = claims();
    const { sid: _sid, ...noSid } = claims();
    const { sub: _sub, ...noSub } = claims();
    for (const payload of [
      noExp,
      noSid,
      noSub,
      { ...claims(), iss: "someone-else" },
      { ...claims(), aud: "other-api" },
      { ...claims(), sid: "not-a-uuid" },
    ]) {
      expect(await codeOf(verifyAccessToken(config, await sign(payload), now))).toBe("UNAUTHORIZED");
    }
  });

  test("garbage", async () => {
    for (const token of ["", "garbage", "a.b.c", "....", `${b64({ alg: "HS256" })}.${b64("x")}.`]) {
      expect(await codeOf(verifyAccessToken(config, token, now))).toBe("UNAUTHORIZED");
    }
  });
});
