// Delete steering results no feature or direction links to any more (after a dictionary is dropped).
// Parameters: none. Returns nothing.
MATCH (s:Steering)
WHERE NOT EXISTS { MATCH (s)<-[:STEERED]-(:Feature) } AND NOT EXISTS { MATCH (s)<-[:DIRECTION_STEERED]-(:Direction) }
DETACH DELETE s
