// Delete up to $limit features of one dictionary with their relationships (run until 0).
// Parameters: $dictionary: name; $limit: batch size. Returns: deleted (count).
MATCH (f:Feature)
WHERE f.dictionary = $dictionary
WITH f LIMIT $limit
DETACH DELETE f
RETURN count(f) AS deleted
