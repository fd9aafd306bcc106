// One hop upstream of a feature: the sources that feed it, strongest first by $by.
// Parameters: $id, $k, $sign (1.0 / -1.0 / 0.0), $min_layer, $max_layer (source layer window),
//   $by ('twera', 'era' or 'virtual_weight').
// Returns: id, layer, idx, twera, era, virtual_weight, twera_norm, top_tokens, motor_word.
MATCH (s:Feature)-[e:FEEDS]->(t:Feature {id: $id})
WHERE ($sign = 0.0 OR e.twera * $sign > 0.0) AND s.layer >= $min_layer AND s.layer <= $max_layer
RETURN s.id AS id, s.layer AS layer, s.idx AS idx, e.twera AS twera, e.era AS era,
       e.virtual_weight AS virtual_weight, e.twera_norm AS twera_norm,
       s.top_tokens AS top_tokens, s.motor_word AS motor_word
ORDER BY abs(CASE $by WHEN 'era' THEN e.era WHEN 'virtual_weight' THEN e.virtual_weight ELSE e.twera END) DESC,
         layer, idx
LIMIT $k
