// Link steering results to the features they steered.
// Parameters: $rows: list of {feature (id), steering (id)}.
UNWIND $rows AS r
MATCH (f:Feature {id: r.feature}), (s:Steering {id: r.steering})
MERGE (f)-[:STEERED]->(s)
