// Delete one Dictionary node (its features are deleted by delete_dictionary_features).
// Parameters: $dictionary: name. Returns nothing.
MATCH (d:Dictionary {id: $dictionary})
DELETE d
