// Several features by id.
// Parameters: $ids (list of feature ids).
// Returns: id, layer, idx, density, top_tokens, example_tokens, example_summary, motor_word, description.
MATCH (f:Feature)
WHERE f.id IN $ids
RETURN f.id AS id, f.layer AS layer, f.idx AS idx, f.density AS density, f.top_tokens AS top_tokens,
       f.example_tokens AS example_tokens, f.example_summary AS example_summary, f.motor_word AS motor_word,
       f.description AS description
ORDER BY layer, idx
