// Forget a finished (or undone) replace of one dictionary.
// Stores: neo4j (the embedded store replaces through a copy of its database)
// Parameters: $dictionary. Returns nothing.
MATCH (r:Replacing {dictionary: $dictionary})
DELETE r
