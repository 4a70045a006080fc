-- Shared by every scenario script: data files, URL encoding, and one JSON summary line for bench/run.ts.
local M = {}

M.data_dir = os.getenv("BENCH_DATA_DIR") or "."

function M.lines(name)
  local t = {}
  for line in io.lines(M.data_dir .. "/" .. name) do
    if #line > 0 then t[#t + 1] = line end
  end
  if #t == 0 then error("no data in " .. name) end
  return t
end

function M.urlencode(s)
  return (s:gsub("[^%w%-_%.~]", function(c) return string.format("%%%02X", string.byte(c)) end))
end

-- Each thread gets its own random stream (wrk calls setup in the main state, init in each thread's).
local thread_count = 0
function M.setup(thread)
  thread_count = thread_count + 1
  thread:set("thread_id", thread_count)
end

function M.seed()
  math.randomseed(os.time() * 1000 + (thread_id or 0) * 7919)
end

function M.done(summary, latency, requests)
  io.write(string.format(
    'BENCH_JSON {"requests":%d,"duration_us":%d,"p50_us":%d,"p90_us":%d,"p99_us":%d,"max_us":%d,' ..
    '"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d}\n',
    summary.requests, summary.duration,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max,
    summary.errors.connect, summary.errors.read, summary.errors.write, summary.errors.status, summary.errors.timeout))
end

return M
