-- wrk script: send each pre-signed delivery of a file once; count answers other than 200.
-- Arguments: FILE (one "token<TAB>body" per line) FIRST (1-based line) COUNT.
local requests = {}
local threads = {}
sent, bad, wrapped = 0, 0, 0
local index = 0

function setup(thread)
  table.insert(threads, thread)
end

function init(args)
  local path, first, count = args[1], tonumber(args[2]), tonumber(args[3])
  local n = 0
  for line in io.lines(path) do
    n = n + 1
    if n >= first and n < first + count then
      local tab = line:find("\t", 1, true)
      local token, body = line:sub(1, tab - 1), line:sub(tab + 1)
      requests[#requests + 1] = wrk.format("POST", wrk.path, {
        ["Content-Type"] = "application/json",
        ["Authorization"] = token,
        ["Hash-Token"] = token,
      }, body)
    end
  end
end

function request()
  index = index + 1
  if index > #requests then
    index = 1
    wrapped = wrapped + 1
  end
  sent = sent + 1
  return requests[index]
end

function response(status, headers, body)
  if status ~= 200 then
    bad = bad + 1
  end
end

function done(summary, latency, requests_)
  local s, b, w = 0, 0, 0
  for _, t in ipairs(threads) do
    s, b, w = s + t:get("sent"), b + t:get("bad"), w + t:get("wrapped")
  end
  io.write(string.format("PNM completed=%d non200=%d wrapped=%d\n", summary.requests, b, w))
  io.write(string.format("PNM p50_us=%d p99_us=%d\n", latency:percentile(50), latency:percentile(99)))
end
