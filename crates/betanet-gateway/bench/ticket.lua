-- wrk script for the gateway: ticket once per connection.
-- Admission is per connection, on its first request (SPEC §4.2; the gateway reads the first
-- head itself). wrk has no per-connection hook, so this thread's first `fresh` requests each
-- carry a fresh, single-use ticket cookie from TICKETS (a file of `__Host-bn1=…` lines made
-- by `bench tickets`); `fresh` = 4 × connections per thread, so every connection's first
-- request carries one whatever order wrk's event loop writes them in. Later requests carry no
-- cookie. A connection whose first request had no valid ticket would get the decoy's
-- `404 decoy` (counted by wrk as a non-2xx response), so "Non-2xx" must stay absent.
local tickets = {}
local n = 0
local fresh = 0
local counter = 1
local threads = {}

function setup(thread)
  thread:set("id", counter)
  counter = counter + 1
  table.insert(threads, thread)
end

function init(args)
  local per_thread = tonumber(args[1])
  fresh = 4 * per_thread
  local skip = (id - 1) * fresh
  local i = 0
  for line in io.lines(os.getenv("TICKETS")) do
    if i >= skip and i < skip + fresh then
      table.insert(tickets, line)
    end
    i = i + 1
  end
  req_plain = wrk.format("GET", "/bench", { ["Host"] = "bench.test" })
end

function request()
  n = n + 1
  if n <= #tickets then
    return wrk.format("GET", "/bench", { ["Host"] = "bench.test", ["Cookie"] = tickets[n] })
  end
  return req_plain
end
