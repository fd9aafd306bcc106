// A feature's logit-lens unembeds with their values, top (side "top") and bottom ("bottom").
// Parameters: $id. Returns: side, rank, token, value.
MATCH (f:Feature {id: $id})-[p:PROMOTES]->(:Token)
RETURN 'top' AS side, p.rank AS rank, p.token AS token, p.value AS value
UNION ALL
MATCH (f:Feature {id: $id})-[p:SUPPRESSES]->(:Token)
RETURN 'bottom' AS side, p.rank AS rank, p.token AS token, p.value AS value
