// Delete up to $limit relationships of one dictionary's features (run until 0), so that a
// transaction's size is bounded by what it touches, not by a feature count. Every
// relationship type a Feature takes part in starts at it (FEEDS, PROMOTES, SUPPRESSES,
// FIRES_ON, ACTIVE_ON, STEERED), and FEEDS stays within one dictionary.
// Parameters: $dictionary: name; $limit: batch size. Returns: deleted (count).
MATCH (f:Feature)-[r]->()
WHERE f.dictionary = $dictionary
WITH r LIMIT $limit
DELETE r
RETURN count(r) AS deleted
