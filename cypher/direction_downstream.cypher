// A direction's downstream features by |TWERA|, sign kept.
// Parameters: $id (direction id), $k. Returns: id, layer, idx, twera, era, virtual_weight,
//   twera_norm, top_tokens, motor_word.
MATCH (d:Direction {id: $id})-[e:DIRECTS]->(f:Feature)
RETURN f.id AS id, f.layer AS layer, f.idx AS idx, e.twera AS twera, e.era AS era,
       e.virtual_weight AS virtual_weight, e.twera_norm AS twera_norm, f.top_tokens AS top_tokens,
       f.motor_word AS motor_word
ORDER BY abs(e.twera) DESC, id
LIMIT $k
