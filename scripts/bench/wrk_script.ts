/**
 * The wrk Lua script (wrk_driver.ts writes it to a file for `wrk -s`):
 * setup() numbers the threads; init(dir, path) loads thread t's requests
 * from `<dir>/data-<t>.txt` (`<signature>TAB<body>` per line) and formats
 * them once, before the clock starts; request() hands out the next one, or a
 * harmless GET counted as `exhausted` when they ran out; response() tells
 * ACCEPTED from DUPLICATE by the body; done() sums the threads' counts and
 * prints them with wrk's latency percentiles as one `WRK_JSON {...}` line.
 */
export const WRK_SCRIPT =
  `-- Written by scripts/bench/wrk_driver.ts: one distinct signed alert per request.
local threads = {}
local next_id = 0
function setup(thread)
  thread:set("tid", next_id)
  next_id = next_id + 1
  table.insert(threads, thread)
end

local reqs = {}
local n = 0
local i = 0
local spare
accepted = 0
duplicate = 0
ok_other = 0
exhausted = 0
statuses = {}

function init(args)
  local dir, path = args[1], args[2]
  for line in io.lines(dir .. "/data-" .. tid .. ".txt") do
    local tab = line:find("\\t", 1, true)
    n = n + 1
    reqs[n] = wrk.format("POST", path, {
      ["content-type"] = "application/json",
      ["x-signature"] = line:sub(1, tab - 1),
    }, line:sub(tab + 1))
  end
  spare = wrk.format("GET", path)
end

function request()
  i = i + 1
  if i > n then
    exhausted = exhausted + 1
    return spare
  end
  return reqs[i]
end

function response(status, headers, body)
  if status == 200 then
    if body:find('"status":"ACCEPTED"', 1, true) then
      accepted = accepted + 1
    elseif body:find('"status":"DUPLICATE"', 1, true) then
      duplicate = duplicate + 1
    else
      ok_other = ok_other + 1
    end
  else
    statuses[status] = (statuses[status] or 0) + 1
  end
end

function done(summary, latency, requests)
  local acc, dup, oth, exh = 0, 0, 0, 0
  local st = {}
  for _, t in ipairs(threads) do
    acc = acc + t:get("accepted")
    dup = dup + t:get("duplicate")
    oth = oth + t:get("ok_other")
    exh = exh + t:get("exhausted")
    for code, count in pairs(t:get("statuses")) do
      st[#st + 1] = string.format('"%d":%d', code, count)
    end
  end
  local e = summary.errors
  local p = function(q) return latency:percentile(q) / 1000 end
  io.write(string.format(
    'WRK_JSON {"requests":%d,"duration_us":%d,"accepted":%d,"duplicate":%d,"ok_other":%d,' ..
    '"exhausted":%d,"statuses":{%s},"errors":{"connect":%d,"read":%d,"write":%d,"status":%d,' ..
    '"timeout":%d},"latency_ms":{"mean":%.3f,"max":%.3f,"p50":%.3f,"p90":%.3f,"p95":%.3f,' ..
    '"p99":%.3f,"p999":%.3f}}\\n',
    summary.requests, summary.duration, acc, dup, oth, exh, table.concat(st, ","),
    e.connect, e.read, e.write, e.status, e.timeout,
    latency.mean / 1000, latency.max / 1000, p(50), p(90), p(95), p(99), p(99.9)))
end
`;
