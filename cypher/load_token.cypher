// Load tokens (Neo4j bulk path; the embedded store uses COPY).
// Parameters: $rows: list of {id, model, text}. Returns nothing.
UNWIND $rows AS r
MERGE (t:Token {id: r.id})
SET t.model = r.model, t.text = r.text
