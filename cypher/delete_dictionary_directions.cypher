// Delete a dictionary's directions with their edges and steering links (graphkit drop).
// Parameters: $dictionary. Returns nothing.
MATCH (d:Direction)
WHERE d.dictionary = $dictionary
DETACH DELETE d
