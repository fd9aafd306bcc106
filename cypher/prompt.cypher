// A prompt node by id.
// Parameters: $id (prompt id). Returns id, text, tokens (no rows when absent).
MATCH (p:Prompt {id: $id})
RETURN p.id AS id, p.text AS text, p.tokens AS tokens
