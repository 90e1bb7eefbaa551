-- wrk script for benches/run. Static requests (no per-request Lua, so wrk itself stays cheap):
-- BENCH_KEY adds `Authorization: Token KEY`; BENCH_LOGIN="username=…&password=…" makes every
-- request a form POST (a login). BENCH_KEYS="K1 K2 …" sends the keys in turn instead, one
-- pre-formatted request each (so several rate-limited tokens share the load; compare only with
-- another BENCH_KEYS run, since it costs wrk a Lua call per request). Ends with one
-- machine-readable RESULT line.
local key = os.getenv("BENCH_KEY")
local keys = os.getenv("BENCH_KEYS")
local login = os.getenv("BENCH_LOGIN")
if keys and keys ~= "" then
  local formatted = {}
  init = function(args)
    for k in string.gmatch(keys, "%S+") do
      formatted[#formatted + 1] = wrk.format(nil, nil, { ["Authorization"] = "Token " .. k })
    end
  end
  local next = 0
  request = function()
    next = next % #formatted + 1
    return formatted[next]
  end
elseif login and login ~= "" then
  wrk.method = "POST"
  wrk.body = login
  wrk.headers["Content-Type"] = "application/x-www-form-urlencoded"
elseif key and key ~= "" then
  wrk.headers["Authorization"] = "Token " .. key
end

done = function(summary, latency, requests)
  local seconds = summary.duration / 1e6
  local e = summary.errors
  io.write(string.format("RESULT %.0f %.2f %.2f %d %d %d\n",
    summary.requests / seconds,
    latency:percentile(50) / 1000,
    latency:percentile(99) / 1000,
    summary.requests,
    e.status,
    e.connect + e.read + e.write + e.timeout))
end
