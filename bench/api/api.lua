-- wrk script for bench/api: GET requests with the agent's token.
--   list mode:      wrk ... -s api.lua <url> -- list TOKEN PATH
--   timeline mode:  wrk ... -s api.lua <url> -- timeline TOKEN IDSFILE
-- In timeline mode each request asks for the timeline of a conversation
-- drawn from IDSFILE (one id per line, all visible to the token).
local mode, token, arg3
local ids = {}
local counter = 0

function init(args)
	mode, token, arg3 = args[1], args[2], args[3]
	if mode == "timeline" then
		for line in io.lines(arg3) do
			ids[#ids + 1] = line
		end
	end
	math.randomseed(os.time() + tonumber(tostring({}):match("0x(%x+)"), 16) % 100000)
end

function request()
	local path
	if mode == "timeline" then
		path = "/api/v1/conversations/" .. ids[math.random(#ids)] .. "/timeline?limit=50"
	else
		path = arg3
	end
	return wrk.format("GET", path, { ["Authorization"] = "Bearer " .. token })
end

local non2xx = 0
function response(status, headers, body)
	if status ~= 200 then
		non2xx = non2xx + 1
		if non2xx <= 3 then
			io.stderr:write("bench/api: HTTP " .. status .. ": " .. string.sub(body, 1, 200) .. "\n")
		end
	end
end

function done(summary, latency, requests)
	io.write(string.format("RESULT requests=%d non2xx=%d errors=%d p50_ms=%.2f p99_ms=%.2f max_ms=%.2f rps=%.1f\n",
		summary.requests, summary.errors.status, summary.errors.connect + summary.errors.read +
		summary.errors.write + summary.errors.timeout,
		latency:percentile(50) / 1000, latency:percentile(99) / 1000, latency.max / 1000,
		summary.requests / (summary.duration / 1e6)))
end
