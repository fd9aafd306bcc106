// Delete steering results no feature links to any more (after a dictionary is dropped).
// Parameters: none. Returns nothing.
MATCH (s:Steering)
WHERE NOT EXISTS { MATCH (s)<-[:STEERED]-(:Feature) }
DETACH DELETE s
