// Real headless Chromium (Debian's /usr/bin/chromium) driven by playwright-core, with an empty
// profile and everything that would reach past loopback switched off.
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { type BrowserContext, chromium } from "playwright-core";

export const CHROMIUM = process.env.CHROMIUM_PATH ?? "/usr/bin/chromium";

export async function launchChromium(): Promise<{ context: BrowserContext; close: () => Promise<void>; offLoopback: string[] }> {
  const profile = await mkdtemp(join(tmpdir(), "commerce-chromium-"));
  // playwright passes --headless and the empty --user-data-dir itself (launchPersistentContext).
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM,
    headless: true,
    args: [
      "--no-sandbox",
      "--disable-gpu",
      "--disable-quic",
      "--no-first-run",
      "--disable-background-networking",
      "--disable-component-update",
      "--disable-sync",
    ],
  });
  // Nothing may leave the machine: every request past loopback is remembered for the tests to
  // refuse. (Not intercepted with context.route: with interception on, Chromium's CORS preflights
  // are no longer what a real browser does.)
  const offLoopback: string[] = [];
  context.on("request", (request) => {
    const url = new URL(request.url());
    if (url.protocol === "data:" || url.protocol === "blob:" || ["127.0.0.1", "localhost", "[::1]"].includes(url.hostname)) return;
    offLoopback.push(url.href);
  });
  return {
    context,
    offLoopback,
    async close() {
      await context.close();
      await rm(profile, { recursive: true, force: true });
    },
  };
}
