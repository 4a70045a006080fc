// Load-generator calibration: the cheapest possible answer, so a wrk run against it measures
// wrk's own ceiling and CPU cost per request on this machine.
const body = JSON.stringify({ result: { data: { ok: true } } });
const server = Bun.serve({
  hostname: "127.0.0.1",
  port: Number(process.env.PORT ?? 4002),
  fetch: () => new Response(body, { headers: { "content-type": "application/json" } }),
});
console.log(JSON.stringify({ msg: "static server listening", url: `http://${server.hostname}:${server.port}` }));
process.on("SIGTERM", () => process.exit(0));
