-- auth.login with the right password, for each benchmark customer in turn (a success resets the
-- email's throttle counter, so the run is never throttled).
local common = dofile(os.getenv("BENCH_WRK_DIR") .. "/common.lua")
setup = common.setup
done = common.done

local bodies, i
function init(args)
  common.seed()
  local password = common.lines("password.txt")[1]
  bodies = {}
  for _, email in ipairs(common.lines("emails.txt")) do
    bodies[#bodies + 1] = '{"email":"' .. email .. '","password":"' .. password .. '"}'
  end
  i = math.random(#bodies)
end

local headers = { ["content-type"] = "application/json" }
function request()
  i = i % #bodies + 1
  return wrk.format("POST", "/trpc/auth.login", headers, bodies[i])
end
