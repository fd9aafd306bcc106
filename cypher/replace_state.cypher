// The state of a replace of one dictionary on Neo4j, if one was begun and not finished.
// Stores: neo4j (the embedded store replaces through a copy of its database)
// Parameters: $dictionary: name. Returns: phase, node (the Dictionary node's properties to
// write, as JSON).
MATCH (r:Replacing {dictionary: $dictionary})
RETURN r.phase AS phase, r.node AS node
