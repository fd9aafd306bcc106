// Strongest paths (1 to 3 FEEDS hops) from a feature to motor ("say X") features.
// Path score: the product of twera_norm along the path (twera_norm = an edge's TWERA over the
// largest |TWERA| among its source's kept edges, in [-1, 1]); the sign says whether the path
// promotes (+) or suppresses (-) the motor feature. Strongest |score| first.
// Parameters: $id (feature id), $k (max rows).
// Returns: id, layer, idx, word, hops, score, via (feature ids along the path, source first).
MATCH p = (s:Feature {id: $id})-[:FEEDS*1..3]->(t:Feature)
WHERE t.motor_word IS NOT NULL
RETURN t.id AS id, t.layer AS layer, t.idx AS idx, t.motor_word AS word, length(p) AS hops,
       path_score(p) AS score, path_ids(p) AS via
ORDER BY abs(score) DESC, hops, id
LIMIT $k
