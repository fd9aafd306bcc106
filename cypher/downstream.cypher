// One hop downstream of a feature: the targets its output feeds, strongest first by $by.
// Parameters: $id (feature id "dictionary/layer/index"), $k (max rows), $sign (1.0 promoted
//   only, -1.0 suppressed only, 0.0 both, by TWERA's sign), $min_layer, $max_layer (target layer
//   window), $by ('twera', 'era' or 'virtual_weight': the measure whose |value| ranks the kept edges).
// Returns: id, layer, idx, twera, era, virtual_weight, twera_norm, top_tokens, motor_word.
MATCH (s:Feature {id: $id})-[e:FEEDS]->(t:Feature)
WHERE ($sign = 0.0 OR e.twera * $sign > 0.0) AND t.layer >= $min_layer AND t.layer <= $max_layer
RETURN t.id AS id, t.layer AS layer, t.idx AS idx, e.twera AS twera, e.era AS era,
       e.virtual_weight AS virtual_weight, e.twera_norm AS twera_norm,
       t.top_tokens AS top_tokens, t.motor_word AS motor_word
ORDER BY abs(CASE $by WHEN 'era' THEN e.era WHEN 'virtual_weight' THEN e.virtual_weight ELSE e.twera END) DESC,
         layer, idx
LIMIT $k
