"""Geography: H3 cells, route corridors and distances. Pure functions, no Redis.

The exact route search is compiled (numba); `route.warm_up` compiles it ahead of requests."""
