"""Geography: H3 cells, route corridors and distances. Pure functions, no Redis.

Filled in by the along-route retrieval work; the catalogue API does not need it yet."""
