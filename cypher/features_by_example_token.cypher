// Features whose top activating examples peak on a word, casing and leading space folded.
// Parameters: $dictionary, $word, $k.
// Returns: id, layer, idx, rank (best example rank on that word), density, top_tokens.
MATCH (f:Feature)-[r:FIRES_ON]->(t:Token {text: $word})
WHERE f.dictionary = $dictionary
RETURN f.id AS id, f.layer AS layer, f.idx AS idx, min(r.rank) AS rank, f.density AS density,
       f.top_tokens AS top_tokens
ORDER BY rank, density DESC, id
LIMIT $k
