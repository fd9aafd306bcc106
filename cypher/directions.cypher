// The directions of a dictionary.
// Parameters: $dictionary. Returns: id, name, layer, density, max, top_tokens.
MATCH (d:Direction)
WHERE d.dictionary = $dictionary
RETURN d.id AS id, d.name AS name, d.layer AS layer, d.density AS density, d.max AS max,
       d.top_tokens AS top_tokens
ORDER BY name
