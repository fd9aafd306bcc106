// Delete a direction's downstream edges (before they are written again).
// Parameters: $id (direction id). Returns nothing.
MATCH (d:Direction {id: $id})-[e:DIRECTS]->(:Feature)
DELETE e
