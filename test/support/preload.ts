// Loaded by bunfig.toml before every test file: after the whole run, drop this run's database.
import { afterAll } from "bun:test";
import { releaseTestDatabase } from "./db";

afterAll(() => releaseTestDatabase());
