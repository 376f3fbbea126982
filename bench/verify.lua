-- wrk script: each request picks a random path from the file named after `--`.
local paths = {}
local counter = 0

function init(args)
  for line in io.lines(args[1]) do
    paths[#paths + 1] = line
  end
  math.randomseed(os.time() + tonumber(tostring({}):sub(8), 16) % 100000)
end

function request()
  counter = counter + 1
  return wrk.format("GET", paths[math.random(#paths)])
end
