-- Plain-mode text pushes with a unique MsgId per request (per-thread counter).
-- Args: path (signed query, fixed timestamp/nonce for the run), body head, body tail, MsgId tag.
local threads = 0
local counter = 0

function setup(thread)
  thread:set("tid", threads)
  threads = threads + 1
end

function init(args)
  path = args[1]
  head = args[2]
  tail = args[3]
  tag = args[4]
  headers = { ["Content-Type"] = "text/xml" }
end

function request()
  counter = counter + 1
  local body = head .. tag .. string.format("%02d%013d", tid, counter) .. tail
  return wrk.format("POST", path, headers, body)
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'WRK_JSON {"requests":%d,"duration_us":%d,"connect_errors":%d,"read_errors":%d,"write_errors":%d,"status_errors":%d,"timeouts":%d,"p50_us":%d,"p99_us":%d,"max_us":%d,"mean_us":%.1f}\n',
    summary.requests, summary.duration, e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(99), latency.max, latency.mean))
end
