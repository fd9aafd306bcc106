// Record that a replace of one dictionary on Neo4j has reached a phase (loading, retiring,
// promoting, cleaning), with the Dictionary node's properties (JSON) to write when the new
// features are promoted. (The new load under NAME~replacing, the old retire to NAME~replaced.)
// Stores: neo4j (the embedded store replaces through a copy of its database)
// Parameters: $dictionary, $phase, $node. Returns nothing.
MERGE (r:Replacing {dictionary: $dictionary})
SET r.phase = $phase, r.node = $node
