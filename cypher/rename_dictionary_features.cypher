// Move up to $limit features from dictionary $from to dictionary $to (run until 0): their
// dictionary property and the dictionary part of their ids. Touches nodes only, so a batch's
// size does not grow with the features' degrees.
// Stores: neo4j (the embedded store replaces through a copy of its database)
// Parameters: $from, $to: names; $limit: batch size. Returns: renamed (count).
MATCH (f:Feature)
WHERE f.dictionary = $from
WITH f LIMIT $limit
SET f.id = $to + substring(f.id, size($from)), f.dictionary = $to
RETURN count(f) AS renamed
