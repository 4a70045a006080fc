/** Current hashing parameters; a stored hash below them is re-hashed at the next login. */
export const PASSWORD_PARAMS = { memoryCost: 19_456, timeCost: 2, parallelism: 1, outputLen: 32 } as const;

/** True when a PHC string is not argon2id or was made with weaker parameters than today's. */
export function needsRehash(passwordHash: string): boolean {
  const m = /^\$argon2id\$v=19\$m=(\d+),t=(\d+),p=(\d+)\$/.exec(passwordHash);
  if (!m) return true;
  return Number(m[1]) < PASSWORD_PARAMS.memoryCost || Number(m[2]) < PASSWORD_PARAMS.timeCost;
}
