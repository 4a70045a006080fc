-- products.byId over the catalog's ids, each thread starting at a random place.
local common = dofile(os.getenv("BENCH_WRK_DIR") .. "/common.lua")
setup = common.setup
done = common.done

local paths, i
function init(args)
  common.seed()
  paths = {}
  for _, id in ipairs(common.lines("product-ids.txt")) do
    paths[#paths + 1] = "/trpc/products.byId?input=" .. common.urlencode('{"id":"' .. id .. '"}')
  end
  i = math.random(#paths)
end

function request()
  i = i % #paths + 1
  return wrk.format("GET", paths[i])
end
