-- wrk script: POST pre-signed webhook bodies (made by gen_bodies.py), each
-- message id once. Thread k reads DIR/bodies-k.txt.
-- Usage: wrk ... -s webhook.lua URL -- DIR PATH
-- If a thread runs out of bodies it starts over; those requests are replays
-- (parleyd answers them without inserting), and done() reports how many.

local threads = {}
local next_id = 0

function setup(thread)
	thread:set("tid", next_id)
	next_id = next_id + 1
	table.insert(threads, thread)
end

function init(args)
	local dir = args[1]
	path = args[2]
	sigs, bodies, n = {}, {}, 0
	local f = assert(io.open(dir .. "/bodies-" .. tid .. ".txt", "r"))
	for line in f:lines() do
		local sig, body = line:match("^([^\t]+)\t(.*)$")
		n = n + 1
		sigs[n], bodies[n] = sig, body
	end
	f:close()
	assert(n > 0, "no bodies for thread " .. tid)
	i, replays, wrapped = 0, 0, false
end

function request()
	i = i + 1
	if i > n then
		i, wrapped = 1, true
	end
	if wrapped then
		replays = replays + 1
	end
	return wrk.format("POST", path, {
		["Content-Type"] = "application/json",
		["X-Parley-Signature"] = sigs[i],
	}, bodies[i])
end

function done(summary, latency, requests)
	local total = 0
	for _, t in ipairs(threads) do
		total = total + (t:get("replays") or 0)
	end
	io.write(string.format("replayed-ids: %d\n", total))
end
