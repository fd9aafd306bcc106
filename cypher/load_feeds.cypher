// Load TWERA edges (Neo4j bulk path; the embedded store uses COPY).
// Parameters: $rows: list of {source, target, twera, era, virtual_weight, twera_norm}.
UNWIND $rows AS r
MATCH (a:Feature {id: r.source}), (b:Feature {id: r.target})
MERGE (a)-[e:FEEDS]->(b)
SET e.twera = r.twera, e.era = r.era, e.virtual_weight = r.virtual_weight, e.twera_norm = r.twera_norm
