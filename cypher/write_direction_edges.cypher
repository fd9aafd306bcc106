// A direction's downstream edges.
// Parameters: $rows: list of {source (direction id), target (feature id), twera, era, virtual_weight, twera_norm}.
UNWIND $rows AS r
MATCH (d:Direction {id: r.source}), (f:Feature {id: r.target})
CREATE (d)-[:DIRECTS {twera: r.twera, era: r.era, virtual_weight: r.virtual_weight, twera_norm: r.twera_norm}]->(f)
