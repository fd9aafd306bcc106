// Store a feature's description (`graphkit describe`).
// Parameters: $id (feature id), $description.
MATCH (f:Feature {id: $id})
SET f.description = $description
RETURN f.id AS id
