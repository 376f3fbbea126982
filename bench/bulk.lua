-- wrk script: each request POSTs a random body (one line of the file named after `--`, a JSON
-- {"items": [...]} of 1,000 items) to /api/v1/verify/bulk with the platform key (second argument).
local bodies = {}
local headers = {}

function init(args)
  for line in io.lines(args[1]) do
    bodies[#bodies + 1] = line
  end
  headers["Authorization"] = "Bearer " .. args[2]
  headers["Content-Type"] = "application/json"
  math.randomseed(os.time() + tonumber(tostring({}):sub(8), 16) % 100000)
end

function request()
  return wrk.format("POST", "/api/v1/verify/bulk", headers, bodies[math.random(#bodies)])
end
