-- Replays pre-generated requests (safe mode: a fresh Encrypt and msg_signature per request).
-- Args: pool file of "path<TAB>body" lines. Thread t of T takes lines t, t+T, t+2T, ...
local threads = 0

function setup(thread)
  thread:set("tid", threads)
  threads = threads + 1
end

function init(args)
  local nthreads = tonumber(args[2])
  paths = {}
  bodies = {}
  local i = 0
  for line in io.lines(args[1]) do
    if i % nthreads == tid then
      local tab = string.find(line, "\t", 1, true)
      paths[#paths + 1] = string.sub(line, 1, tab - 1)
      bodies[#bodies + 1] = string.sub(line, tab + 1)
    end
    i = i + 1
  end
  n = #paths
  k = 0
  headers = { ["Content-Type"] = "text/xml" }
end

function request()
  k = k + 1
  if k > n then
    k = 1
  end
  return wrk.format("POST", paths[k], headers, bodies[k])
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'WRK_JSON {"requests":%d,"duration_us":%d,"connect_errors":%d,"read_errors":%d,"write_errors":%d,"status_errors":%d,"timeouts":%d,"p50_us":%d,"p99_us":%d,"max_us":%d,"mean_us":%.1f}\n',
    summary.requests, summary.duration, e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(99), latency.max, latency.mean))
end
