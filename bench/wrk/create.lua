-- orders.create: 1 to 3 distinct products (ample stock), quantity 1 to 3, signed in as one of
-- many customers in turn.
local common = dofile(os.getenv("BENCH_WRK_DIR") .. "/common.lua")
setup = common.setup
done = common.done

local tokens, ids, t
function init(args)
  common.seed()
  tokens = common.lines("tokens.txt")
  ids = common.lines("order-product-ids.txt")
  t = math.random(#tokens)
end

function request()
  t = t % #tokens + 1
  local n = math.random(3)
  local picked, lines = {}, {}
  while #lines < n do
    local id = ids[math.random(#ids)]
    if not picked[id] then
      picked[id] = true
      lines[#lines + 1] = '{"productId":"' .. id .. '","quantity":' .. math.random(3) .. '}'
    end
  end
  local body = '{"items":[' .. table.concat(lines, ",") .. ']}'
  return wrk.format("POST", "/trpc/orders.create", {
    ["content-type"] = "application/json",
    ["authorization"] = "Bearer " .. tokens[t],
  }, body)
end
