// Write a prompt's feature activations.
// Parameters: $rows: list of {feature (id), prompt (id), position, token, activation}.
UNWIND $rows AS r
MATCH (f:Feature {id: r.feature}), (p:Prompt {id: r.prompt})
MERGE (f)-[a:ACTIVE_ON {position: r.position}]->(p)
SET a.token = r.token, a.activation = r.activation
