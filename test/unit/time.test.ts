import { describe, expect, test } from "bun:test";
import { toDbTime, toIso } from "../../src/lib/time";

describe("toIso", () => {
  const viaDate = (text: string) => new Date(`${text.replace(" ", "T")}Z`).toISOString();

  test("gives what Date#toISOString gives for every shape of database timestamp text", () => {
    // Random instants from year 1 to 9999, printed as Postgres prints them: fraction digits
    // from none to six, trailing zeros dropped, ' ' or 'T' between date and time.
    let seed = 42;
    const random = () => {
      seed = (seed * 1103515245 + 12345) % 2 ** 31;
      return seed / 2 ** 31;
    };
    for (let i = 0; i < 5000; i++) {
      const ms = Math.floor(random() * (253402300799999 + 62135596800000)) - 62135596800000;
      const iso = new Date(ms).toISOString();
      const micros = `${iso.slice(20, 23)}${String(Math.floor(random() * 1000)).padStart(3, "0")}`.slice(0, Math.floor(random() * 7));
      const fraction = micros.replace(/0+$/, "");
      const text = `${iso.slice(0, 10)}${random() < 0.5 ? " " : "T"}${iso.slice(11, 19)}${fraction ? `.${fraction}` : ""}`;
      expect(toIso(text)).toBe(viaDate(text));
    }
  });

  test("cuts the fraction to milliseconds instead of rounding, like Date", () => {
    expect(toIso("2026-11-24 23:59:59.999999")).toBe("2026-11-24T23:59:59.999Z");
    expect(toIso("2026-11-24 23:17:00.1")).toBe("2026-11-24T23:17:00.100Z");
    expect(toIso("2026-11-24 23:17:00")).toBe("2026-11-24T23:17:00.000Z");
  });

  test("formats Dates, and refuses text that is not a timestamp instead of reshaping it", () => {
    expect(toIso(new Date(Date.UTC(2026, 10, 24, 23, 17)))).toBe("2026-11-24T23:17:00.000Z");
    expect(() => toIso("2026-11-24 23:17:00 BC")).toThrow(RangeError);
    expect(() => toIso("yesterday")).toThrow(RangeError);
  });
});

describe("toDbTime", () => {
  test("is the inverse of toIso at millisecond precision", () => {
    const at = new Date(Date.UTC(2026, 10, 24, 23, 17, 0, 123));
    expect(toDbTime(at)).toBe("2026-11-24 23:17:00.123");
    expect(toIso(toDbTime(at))).toBe(at.toISOString());
  });
});
