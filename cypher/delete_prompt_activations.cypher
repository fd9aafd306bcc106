// Remove one dictionary's ACTIVE_ON edges to a prompt (before writing them anew).
// Parameters: $prompt (prompt id), $dictionary. Returns nothing.
MATCH (f:Feature)-[a:ACTIVE_ON]->(p:Prompt {id: $prompt})
WHERE f.dictionary = $dictionary
DELETE a
