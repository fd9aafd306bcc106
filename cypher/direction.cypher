// One direction with its statistics, unembeds and vectors.
// Parameters: $id. Returns: every Direction property, named as in the schema.
MATCH (d:Direction {id: $id})
RETURN d.id AS id, d.dictionary AS dictionary, d.name AS name, d.layer AS layer, d.bias AS bias,
       d.read_site AS read_site,
       d.vector AS vector, d.read_vector AS read_vector, d.count AS count, d.density AS density,
       d.mean AS mean, d.max AS max, d.top_tokens AS top_tokens, d.bottom_tokens AS bottom_tokens
