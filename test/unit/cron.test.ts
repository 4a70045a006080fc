import { describe, expect, test } from "bun:test";
import { cronMatches, floorToMinute, parseCron } from "../../src/jobs/cron";

const at = (iso: string) => new Date(iso);

describe("cron: matching", () => {
  test("*/15 fires on the quarter hours only", () => {
    const fired = Array.from({ length: 60 }, (_, m) => m).filter((m) =>
      cronMatches("*/15 * * * *", at(`2026-11-25T10:${String(m).padStart(2, "0")}:30Z`)),
    );
    expect(fired).toEqual([0, 15, 30, 45]);
  });

  test("0 3 * * 0 fires on Sunday 03:00 UTC and not on other days or hours", () => {
    expect(cronMatches("0 3 * * 0", at("2026-11-29T03:00:00Z"))).toBe(true); // a Sunday
    expect(cronMatches("0 3 * * 7", at("2026-11-29T03:00:00Z"))).toBe(true); // 7 is Sunday too
    expect(cronMatches("0 3 * * 0", at("2026-11-28T03:00:00Z"))).toBe(false);
    expect(cronMatches("0 3 * * 0", at("2026-11-29T04:00:00Z"))).toBe(false);
    expect(cronMatches("0 3 * * 0", at("2026-11-29T03:01:00Z"))).toBe(false);
  });

  test("0 */6 * * * fires at 00, 06, 12 and 18", () => {
    const hours = Array.from({ length: 24 }, (_, h) => h).filter((h) =>
      cronMatches("0 */6 * * *", at(`2026-11-25T${String(h).padStart(2, "0")}:00:00Z`)),
    );
    expect(hours).toEqual([0, 6, 12, 18]);
  });

  test("0 4 1 * * fires on the first of the month only", () => {
    expect(cronMatches("0 4 1 * *", at("2026-12-01T04:00:00Z"))).toBe(true);
    expect(cronMatches("0 4 1 * *", at("2026-12-02T04:00:00Z"))).toBe(false);
  });

  test("lists, ranges and stepped ranges", () => {
    const s = parseCron("5,10-12,30-40/5 9-17 * 1,6 1-5");
    expect([...s.minutes].sort((a, b) => a - b)).toEqual([5, 10, 11, 12, 30, 35, 40]);
    expect([...s.hours].sort((a, b) => a - b)).toEqual([9, 10, 11, 12, 13, 14, 15, 16, 17]);
    expect(cronMatches(s, at("2026-06-02T09:35:00Z"))).toBe(true); // Tuesday in June
    expect(cronMatches(s, at("2026-06-06T09:35:00Z"))).toBe(false); // Saturday
    expect(cronMatches(s, at("2026-07-02T09:35:00Z"))).toBe(false); // July
  });

  test("when day-of-month and day-of-week are both set, either one matches (classic cron)", () => {
    expect(cronMatches("0 0 13 * 5", at("2026-11-13T00:00:00Z"))).toBe(true); // Friday the 13th
    expect(cronMatches("0 0 13 * 5", at("2026-11-20T00:00:00Z"))).toBe(true); // a Friday
    expect(cronMatches("0 0 13 * 5", at("2026-10-13T00:00:00Z"))).toBe(true); // a Tuesday the 13th
    expect(cronMatches("0 0 13 * 5", at("2026-11-19T00:00:00Z"))).toBe(false);
  });

  test("floorToMinute drops seconds", () => {
    expect(floorToMinute(at("2026-11-25T10:15:59.999Z")).toISOString()).toBe("2026-11-25T10:15:00.000Z");
  });
});

describe("cron: errors", () => {
  for (const bad of [
    "* * * *",
    "60 * * * *",
    "* 24 * * *",
    "* * 0 * *",
    "*/0 * * * *",
    "5-1 * * * *",
    "MON * * * *",
    "1/2/3 * * * *",
    "",
  ]) {
    test(`refuses "${bad}"`, () => {
      expect(() => parseCron(bad)).toThrow();
    });
  }
});
