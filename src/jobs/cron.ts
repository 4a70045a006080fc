// A five-field cron matcher (minute hour day-of-month month day-of-week, UTC): numbers, `*`,
// `*/n`, `a-b`, `a-b/n` and comma lists. Enough for the schedules in docs/operations.md; names (MON, JAN)
// and `L`/`W`/`#` are refused rather than guessed.

const FIELDS = [
  { name: "minute", min: 0, max: 59 },
  { name: "hour", min: 0, max: 23 },
  { name: "day of month", min: 1, max: 31 },
  { name: "month", min: 1, max: 12 },
  { name: "day of week", min: 0, max: 7 },
] as const;

export interface CronSchedule {
  expression: string;
  minutes: Set<number>;
  hours: Set<number>;
  daysOfMonth: Set<number>;
  months: Set<number>;
  daysOfWeek: Set<number>;
  /** Classic cron: when both day fields are restricted, a day matches if EITHER matches. */
  domRestricted: boolean;
  dowRestricted: boolean;
}

function parseField(text: string, field: (typeof FIELDS)[number]): Set<number> {
  const values = new Set<number>();
  const int = (s: string) => {
    if (!/^\d+$/.test(s)) throw new Error(`cron ${field.name}: "${s}" is not a number`);
    const n = Number(s);
    if (n < field.min || n > field.max) throw new Error(`cron ${field.name}: ${n} is outside ${field.min}-${field.max}`);
    return n;
  };
  for (const part of text.split(",")) {
    const [range, stepText, extra] = part.split("/");
    if (extra !== undefined || range === "") throw new Error(`cron ${field.name}: "${part}" is malformed`);
    const step = stepText === undefined ? 1 : int(stepText);
    if (step < 1) throw new Error(`cron ${field.name}: the step must be at least 1`);
    let from: number;
    let to: number;
    if (range === "*") {
      from = field.min;
      to = field.max;
    } else if (range.includes("-")) {
      const [a, b, more] = range.split("-");
      if (more !== undefined) throw new Error(`cron ${field.name}: "${range}" is malformed`);
      from = int(a);
      to = int(b);
      if (from > to) throw new Error(`cron ${field.name}: the range ${range} runs backwards`);
    } else {
      from = int(range);
      to = stepText === undefined ? from : field.max;
    }
    for (let n = from; n <= to; n += step) values.add(n);
  }
  return values;
}

export function parseCron(expression: string): CronSchedule {
  const parts = expression.trim().split(/\s+/);
  if (parts.length !== 5) throw new Error(`cron "${expression}" must have 5 fields, it has ${parts.length}`);
  const [minutes, hours, daysOfMonth, months, daysOfWeek] = parts.map((p, i) => parseField(p, FIELDS[i]));
  // 7 is Sunday as well as 0.
  if (daysOfWeek.has(7)) daysOfWeek.add(0);
  return {
    expression,
    minutes,
    hours,
    daysOfMonth,
    months,
    daysOfWeek,
    domRestricted: parts[2] !== "*",
    dowRestricted: parts[4] !== "*",
  };
}

/** Whether the schedule fires in the UTC minute that contains `at`. */
export function cronMatches(schedule: CronSchedule | string, at: Date): boolean {
  const s = typeof schedule === "string" ? parseCron(schedule) : schedule;
  if (!s.minutes.has(at.getUTCMinutes()) || !s.hours.has(at.getUTCHours()) || !s.months.has(at.getUTCMonth() + 1)) {
    return false;
  }
  const dom = s.daysOfMonth.has(at.getUTCDate());
  const dow = s.daysOfWeek.has(at.getUTCDay());
  if (s.domRestricted && s.dowRestricted) return dom || dow;
  return dom && dow;
}

/** The start of the UTC minute that contains `at`. */
export function floorToMinute(at: Date): Date {
  return new Date(Math.floor(at.getTime() / 60_000) * 60_000);
}
