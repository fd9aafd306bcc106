// Forget a finished (or undone) replace of one dictionary.
// Parameters: $dictionary. Returns nothing.
MATCH (r:Replacing {dictionary: $dictionary})
DELETE r
