// Load features (Neo4j bulk path; the embedded store uses COPY).
// Parameters: $rows: list of maps with every Feature property (schema.NODES["Feature"]).
UNWIND $rows AS r
CREATE (f:Feature {id: r.id})
SET f.dictionary = r.dictionary, f.layer = r.layer, f.idx = r.idx, f.count = r.count,
    f.density = r.density, f.mean = r.mean, f.max = r.max,
    f.top_tokens = r.top_tokens, f.bottom_tokens = r.bottom_tokens,
    f.example_tokens = r.example_tokens, f.example_summary = r.example_summary,
    f.motor_word = r.motor_word, f.motor_score = r.motor_score, f.description = r.description
