// Time-ordered ids (RFC 9562 UUID version 7) for the rows the service inserts most: orders,
// order items and sessions. A random v4 key lands on a random leaf of its B-tree, so once the
// primary keys outgrow shared_buffers nearly every insert reads, dirties and (first after a
// checkpoint) full-page-writes a leaf of its own; a v7 key starts with the time, so new rows
// share the few leaves at the growing edge. bench/uuid-locality.ts measures the difference.
//
// Layout (RFC 9562 §5.7), 128 bits: unix_ts_ms (48) | ver = 7 (4) | rand_a (12) | var = 0b10 (2) |
// rand_b (62). Monotonic within a process (§6.2, method 1: a 12-bit counter in rand_a, seeded
// randomly each new millisecond with its top bit clear so it has room to count): ids from one
// process sort in the order they were made, also when several fall in one millisecond. Across
// processes ids only sort to the millisecond, which is all the B-trees need.
//
// Only Web APIs (crypto.getRandomValues, Date.now): it runs on Bun, Cloudflare Workers and Deno.

const HEX = Array.from({ length: 256 }, (_, i) => i.toString(16).padStart(2, "0"));

/**
 * A generator of UUID v7 text with its own monotonic state. `now` (ms since the epoch) is for
 * tests; a clock that goes back (NTP step) never makes an id sort before the previous one: the
 * previous millisecond is kept and the counter goes on.
 */
export function createUuidv7(): (now?: number) => string {
  let lastMs = -1;
  let counter = 0;
  // Random bytes are drawn in blocks: one getRandomValues call per 64 ids, not per id.
  const POOL_IDS = 64;
  const pool = new Uint8Array(POOL_IDS * 10);
  let poolNext = POOL_IDS;
  const nextRandom = (): number => {
    if (poolNext === POOL_IDS) {
      crypto.getRandomValues(pool);
      poolNext = 0;
    }
    return poolNext++ * 10;
  };
  // 11 random bits: the 12-bit counter starts with its top bit clear, leaving >= 2048 steps.
  const seed = (r: number) => ((pool[r] << 8) | pool[r + 1]) & 0x7ff;

  return (now: number = Date.now()): string => {
    let ms = Math.floor(now);
    const r = nextRandom();
    if (ms > lastMs) {
      lastMs = ms;
      counter = seed(r);
    } else if (++counter > 0xfff) {
      // 4096 ids in one millisecond: borrow the next millisecond rather than wrap (which would
      // sort before the ids just made). The timestamp runs at most a few ms ahead under a burst.
      ms = ++lastMs;
      counter = seed(r);
    } else {
      ms = lastMs;
    }
    // 48-bit timestamp, big-endian: the high 16 bits and the low 32 bits (JS bit ops are 32-bit).
    const hi = Math.floor(ms / 0x1_0000_0000);
    const lo = ms >>> 0;
    const b6 = 0x70 | (counter >>> 8); // version 7, then the counter's top 4 bits
    const b7 = counter & 0xff;
    const b8 = 0x80 | (pool[r + 2] & 0x3f); // variant 0b10, then 6 of rand_b's 62 random bits
    return (
      HEX[(hi >>> 8) & 0xff] +
      HEX[hi & 0xff] +
      HEX[lo >>> 24] +
      HEX[(lo >>> 16) & 0xff] +
      "-" +
      HEX[(lo >>> 8) & 0xff] +
      HEX[lo & 0xff] +
      "-" +
      HEX[b6] +
      HEX[b7] +
      "-" +
      HEX[b8] +
      HEX[pool[r + 3]] +
      "-" +
      HEX[pool[r + 4]] +
      HEX[pool[r + 5]] +
      HEX[pool[r + 6]] +
      HEX[pool[r + 7]] +
      HEX[pool[r + 8]] +
      HEX[pool[r + 9]]
    );
  };
}

/** The process's generator: every id the service makes goes through it, so they sort in creation order. */
export const uuidv7: () => string = createUuidv7();

/** The millisecond timestamp a v7 id carries (for tests and diagnostics). */
export function uuidv7Time(id: string): number {
  return Number.parseInt(id.slice(0, 8) + id.slice(9, 13), 16);
}
