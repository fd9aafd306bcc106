// Load TWERA edges (Neo4j bulk path; the embedded store uses COPY). CREATE, not MERGE: a load
// deletes the dictionary first, so nothing can be duplicated, and MERGE would scan every
// existing relationship of high-degree nodes.
// Parameters: $rows: list of {source, target, twera, era, virtual_weight, twera_norm}.
UNWIND $rows AS r
MATCH (a:Feature {id: r.source}), (b:Feature {id: r.target})
CREATE (a)-[e:FEEDS]->(b)
SET e.twera = r.twera, e.era = r.era, e.virtual_weight = r.virtual_weight, e.twera_norm = r.twera_norm
