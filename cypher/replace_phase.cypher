// Record that a replace of one dictionary on Neo4j has reached a phase (loading, retiring,
// promoting, cleaning), with the names it loads and retires under and the Dictionary node's
// properties (JSON) to write when the new features are promoted.
// Stores: neo4j (the embedded store replaces through a copy of its database)
// Parameters: $dictionary, $staging, $retired, $phase, $node. Returns nothing.
MERGE (r:Replacing {dictionary: $dictionary})
SET r.staging = $staging, r.retired = $retired, r.phase = $phase, r.node = $node
