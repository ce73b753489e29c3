-- wrk script: POST /v1/decide/invite the way Kamailio does (keep-alive, one request
-- per connection at a time), rotating (source_ip, to) pairs read from BENCH_CASES.
-- Every request has its own Call-ID, so each routed call takes its own channel
-- lease, as in production. BENCH_DELAY_MS > 0 paces each connection (the
-- "70 % of the maximum rate" run). done() prints one JSON line for bench/run.py.

local threads = {}
local run = os.getenv("BENCH_RUN") or "0"
local token = os.getenv("BENCH_TOKEN") or ""
local pace = tonumber(os.getenv("BENCH_DELAY_MS") or "0")

function setup(thread)
  thread:set("tid", #threads)
  table.insert(threads, thread)
end

function init(args)
  cases = {}
  for line in io.lines(os.getenv("BENCH_CASES")) do
    local src, to = line:match("^(%S+) (%S+)$")
    if src then cases[#cases + 1] = {src, to} end
  end
  sent = 0
  routed, challenged, rejected, failed, shed = 0, 0, 0, 0, 0
  headers = {["Content-Type"] = "application/json"}
  if token ~= "" then headers["Authorization"] = "Bearer " .. token end
end

function request()
  sent = sent + 1
  local c = cases[(sent * 7919 + tid * 104729) % #cases + 1]
  -- The values come from our own generated file (digits and addresses only).
  local body = string.format(
    '{"source_ip":"%s","to":"%s","from":"15550001111","call_id":"bench-%s-%d-%d"}',
    c[1], c[2], run, tid, sent)
  return wrk.format("POST", "/v1/decide/invite", headers, body)
end

if pace > 0 then
  function delay() return pace end
end

function response(status, hdrs, body)
  if status == 503 and body:find('"code":"overloaded"', 1, true) then
    shed = shed + 1  -- refused at once for capacity: the burst run counts these apart
  elseif status ~= 200 then
    failed = failed + 1
  elseif body:find('"verdict":"route"', 1, true) then
    routed = routed + 1
  elseif body:find('"verdict":"challenge"', 1, true) then
    challenged = challenged + 1
  else
    rejected = rejected + 1
  end
end

function done(summary, latency, requests)
  local v = {route = 0, challenge = 0, reject = 0, http_error = 0, shed = 0}
  for _, t in ipairs(threads) do
    v.route = v.route + t:get("routed")
    v.challenge = v.challenge + t:get("challenged")
    v.reject = v.reject + t:get("rejected")
    v.http_error = v.http_error + t:get("failed")
    v.shed = v.shed + t:get("shed")
  end
  local e = summary.errors
  io.write(string.format(
    'BENCH_JSON {"requests":%d,"duration_us":%d,"p50_us":%d,"p90_us":%d,"p99_us":%d,' ..
    '"max_us":%d,"socket_errors":%d,"non_2xx":%d,"route":%d,"challenge":%d,"reject":%d,' ..
    '"http_error":%d,"shed":%d}\n',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(90),
    latency:percentile(99), latency.max, e.connect + e.read + e.write + e.timeout, e.status,
    v.route, v.challenge, v.reject, v.http_error, v.shed))
end
