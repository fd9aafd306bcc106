// Write (or refresh) a prompt node.
// Parameters: $id, $model, $text, $tokens. Returns nothing.
MERGE (p:Prompt {id: $id})
SET p.model = $model, p.text = $text, p.tokens = $tokens
