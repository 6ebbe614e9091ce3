"""Benchmarks of the running stack: `python -m devstack.bench` (what `make bench` runs).

A section benchmarks one service: it checks the service is up (or is skipped with a
note), prepares data, and runs scenarios, each one `load.measure(...)` call, next to a
raw-driver baseline of the same SQL in the same run at the same concurrency. One module
per concern:

- `load`: the load generator (virtual users, budgets, percentiles, open-loop rates);
  why it is our own asyncio client is in its docstring.
- `raw`: the raw psycopg baselines.
- `stack`: the run's options and the checks of the stack every section makes; only
  loopback targets are accepted.
- `catalog`, `ordering`, `jobs`, `saga`: the books, orders, workers and saga sections.
- `report`: the tables printed at the end; `cli`: the command line.
"""
