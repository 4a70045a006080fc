-- products.list, first page, default sort: one fixed GET, so wrk never calls Lua per request.
local common = dofile(os.getenv("BENCH_WRK_DIR") .. "/common.lua")
wrk.method = "GET"
wrk.path = "/trpc/products.list?input=" .. common.urlencode('{"limit":20}')
done = common.done
