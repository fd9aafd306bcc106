// Motor ("say X") features of a dictionary, optionally of one word ("" for all).
// Parameters: $dictionary, $word (normalized word or "").
// Returns: id, layer, idx, word, score (the rule's margin over the second word).
MATCH (f:Feature)
WHERE f.dictionary = $dictionary AND f.motor_word IS NOT NULL AND ($word = '' OR f.motor_word = $word)
RETURN f.id AS id, f.layer AS layer, f.idx AS idx, f.motor_word AS word, f.motor_score AS score
ORDER BY score DESC, layer, idx
