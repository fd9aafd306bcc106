// Token ids already in the store for one model.
// Parameters: $model. Returns: id.
MATCH (t:Token)
WHERE t.model = $model
RETURN t.id AS id
