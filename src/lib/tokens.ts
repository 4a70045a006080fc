import { jwtVerify, SignJWT } from "jose";
import { unauthorized } from "../errors";

export interface TokenConfig {
  secret: Uint8Array;
  ttlSeconds: number;
}

export const TOKEN_ISSUER = "commerce-backend";
export const TOKEN_AUDIENCE = "commerce-api";

export function createTokenConfig(secret: string, ttlSeconds: number): TokenConfig {
  return { secret: new TextEncoder().encode(secret), ttlSeconds };
}

export async function signAccessToken(
  config: TokenConfig,
  claims: { userId: string; sessionId: string; issuedAt: Date; expiresAt: Date },
): Promise<string> {
  return new SignJWT({ sid: claims.sessionId })
    .setProtectedHeader({ alg: "HS256", typ: "JWT" })
    .setIssuer(TOKEN_ISSUER)
    .setAudience(TOKEN_AUDIENCE)
    .setSubject(claims.userId)
    .setIssuedAt(Math.floor(claims.issuedAt.getTime() / 1000))
    .setExpirationTime(Math.floor(claims.expiresAt.getTime() / 1000))
    .setJti(crypto.randomUUID())
    .sign(config.secret);
}

/**
 * Checks signature and claims only; whether the session still exists is the caller's job.
 * jose accepts any algorithm valid for the key and treats `exp` as optional unless told,
 * so both are pinned here.
 */
export async function verifyAccessToken(config: TokenConfig, token: string, now: Date): Promise<{ userId: string; sessionId: string }> {
  try {
    const { payload } = await jwtVerify(token, config.secret, {
      algorithms: ["HS256"],
      issuer: TOKEN_ISSUER,
      audience: TOKEN_AUDIENCE,
      requiredClaims: ["sub", "sid", "exp", "iat"],
      currentDate: now,
    });
    const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
    if (typeof payload.sub !== "string" || typeof payload.sid !== "string" || !UUID.test(payload.sub) || !UUID.test(payload.sid)) {
      throw new Error("malformed claims");
    }
    return { userId: payload.sub, sessionId: payload.sid };
  } catch {
    throw unauthorized("The access token is invalid or expired: sign in again");
  }
}

/** Hex SHA-256 of a string. */
export async function sha256Hex(text: string): Promise<string> {
  const digest = await crypto.subtle.digest("SHA-256", new TextEncoder().encode(text));
  return Buffer.from(digest).toString("hex");
}

/** Sessions store this, never the token. */
export const hashToken = (token: string): Promise<string> => sha256Hex(token);

/** Constant-time comparison of two equal-length hex digests. */
export function digestsEqual(a: string, b: string): boolean {
  if (a.length !== b.length) return false;
  let diff = 0;
  for (let i = 0; i < a.length; i++) diff |= a.charCodeAt(i) ^ b.charCodeAt(i);
  return diff === 0;
}
