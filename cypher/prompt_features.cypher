// Features of a dictionary active on a prompt, strongest first (max over positions).
// Parameters: $prompt (prompt id), $dictionary, $word ("" for all, else only features whose top
//   unembeds or top-example peak tokens include this word, casing and leading space folded), $k.
// Returns: id, layer, idx, activation (max over positions), position (first position with the
//   max), top_tokens, motor_word.
MATCH (f:Feature)-[a:ACTIVE_ON]->(p:Prompt {id: $prompt})
WHERE f.dictionary = $dictionary
OPTIONAL MATCH (f)-[:PROMOTES|FIRES_ON]->(t:Token {text: $word})
WITH f, max(a.activation) AS activation, count(DISTINCT t) AS says
WHERE $word = '' OR says > 0
MATCH (f)-[b:ACTIVE_ON]->(:Prompt {id: $prompt})
WHERE b.activation = activation
RETURN f.id AS id, f.layer AS layer, f.idx AS idx, activation, min(b.position) AS position,
       f.top_tokens AS top_tokens, f.motor_word AS motor_word
ORDER BY activation DESC, layer, idx
LIMIT $k
