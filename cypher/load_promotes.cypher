// Load top-unembed links (Neo4j bulk path; the embedded store uses COPY).
// Parameters: $rows: list of {source, target, rank, value, token}.
UNWIND $rows AS r
MATCH (f:Feature {id: r.source}), (t:Token {id: r.target})
CREATE (f)-[p:PROMOTES {rank: r.rank}]->(t)
SET p.value = r.value, p.token = r.token
