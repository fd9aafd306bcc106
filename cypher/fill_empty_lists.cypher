// After a bulk import: the importer leaves an empty list unset; a Bolt load stores [].
// Parameters: $dictionary (name). Returns: filled (features changed).
MATCH (f:Feature {dictionary: $dictionary})
WHERE f.top_tokens IS NULL OR f.bottom_tokens IS NULL OR f.example_tokens IS NULL
SET f.top_tokens = coalesce(f.top_tokens, []),
    f.bottom_tokens = coalesce(f.bottom_tokens, []),
    f.example_tokens = coalesce(f.example_tokens, [])
RETURN count(f) AS filled
