-- wrk script for bench/bench_http.py: POSTs request bodies (one JSON document per line
-- of $BODIES, taken in turn) to $TARGET with a bearer token ($TOKEN).
local bodies = {}
local index = 0

function init(args)
  for line in io.lines(os.getenv("BODIES")) do
    if #line > 0 then bodies[#bodies + 1] = line end
  end
  wrk.method = "POST"
  wrk.path = os.getenv("TARGET") or "/api/v1/evaluate"
  wrk.headers["Content-Type"] = "application/json"
  wrk.headers["Authorization"] = "Bearer " .. os.getenv("TOKEN")
end

function request()
  index = index % #bodies + 1
  return wrk.format(nil, nil, nil, bodies[index])
end
