// One feature with its statistics, unembeds and example summary.
// Parameters: $id. Returns: every Feature property, named as in the schema.
MATCH (f:Feature {id: $id})
RETURN f.id AS id, f.dictionary AS dictionary, f.layer AS layer, f.idx AS idx, f.count AS count,
       f.density AS density, f.mean AS mean, f.max AS max, f.top_tokens AS top_tokens,
       f.bottom_tokens AS bottom_tokens,
       f.example_tokens AS example_tokens, f.example_summary AS example_summary,
       f.motor_word AS motor_word, f.motor_score AS motor_score, f.description AS description
