// Load the tokens where a feature's top examples peak (Neo4j bulk path).
// Parameters: $rows: list of {source, target, rank}.
UNWIND $rows AS r
MATCH (f:Feature {id: r.source}), (t:Token {id: r.target})
CREATE (f)-[p:FIRES_ON {rank: r.rank}]->(t)
