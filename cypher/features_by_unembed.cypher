// Features whose top unembeds (logit lens) include a word, casing and leading space folded.
// Parameters: $dictionary, $word, $k.
// Returns: id, layer, idx, rank (0 = top unembed), value, token (raw), motor_word.
MATCH (f:Feature)-[p:PROMOTES]->(t:Token {text: $word})
WHERE f.dictionary = $dictionary
RETURN f.id AS id, f.layer AS layer, f.idx AS idx, p.rank AS rank, p.value AS value,
       p.token AS token, f.motor_word AS motor_word
ORDER BY rank, value DESC, id
LIMIT $k
