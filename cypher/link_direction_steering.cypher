// Link a steering result to the direction it steered.
// Parameters: $direction (id), $steering (id).
MATCH (d:Direction {id: $direction}), (s:Steering {id: $steering})
MERGE (d)-[:DIRECTION_STEERED]->(s)
