// Look-alike candidates of a feature: features of the same dictionary within $window layers
// that share top-unembed or top-example words with it, most shared words first.
// Parameters: $id, $window (max layer distance), $k.
// Returns: id, layer, idx, shared (number of shared words), words, top_tokens, motor_word.
MATCH (a:Feature {id: $id})-[:PROMOTES|FIRES_ON]->(t:Token)<-[:PROMOTES|FIRES_ON]-(b:Feature)
WHERE b.dictionary = a.dictionary AND b.id <> a.id AND abs(b.layer - a.layer) <= $window
RETURN b.id AS id, b.layer AS layer, b.idx AS idx, count(DISTINCT t) AS shared,
       collect(DISTINCT t.text) AS words, b.top_tokens AS top_tokens, b.motor_word AS motor_word
ORDER BY shared DESC, layer, idx
LIMIT $k
