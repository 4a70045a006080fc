-- Load-generator calibration: a trivial static answer, so what is left is wrk's own cost.
local common = dofile(os.getenv("BENCH_WRK_DIR") .. "/common.lua")
wrk.method = "GET"
wrk.path = "/"
done = common.done
